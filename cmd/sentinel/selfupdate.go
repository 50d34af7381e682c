package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"

	"go.uber.org/zap"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/selfupdate"
)

// selfUpdatedFrom is the build a self-update replaced, when this process
// is the build it re-executed (selfupdate.UpdatedFromEnv).
var selfUpdatedFrom = os.Getenv(selfupdate.UpdatedFromEnv)

// selfUpdateFirst is the first step of `sentinel upgrade`: when the
// channel offers a newer signed sentinel build for this platform, it
// replaces the running executable with it and re-executes it with the
// same arguments, so that the new build does the run (a --resume goes on
// with the same journal). It returns done when there is nothing more to
// do: --update-self alone (no VERSION, no --resume) updates and stops.
//
// Automatically (without --update-self) only numbered builds look, and a
// failure to look or to update is a warning: the run goes on with the
// running build. With --update-self a failure is an error.
func (o upgradeOptions) selfUpdateFirst(ctx context.Context, inv *cluster.Inventory, target, cacheURL, cmdline string, log *zap.Logger) (done bool, err error) {
	alone := o.updateSelf && target == "" && !o.resume
	switch {
	case o.updateSelf && o.noSelfUpdate:
		return false, usagef("--update-self and --no-self-update contradict each other")
	case o.updateSelf && (o.dryRun || o.downloadOnly):
		return false, usagef("--update-self does not go with --dry-run or --download-only (--download-only puts the sentinel build in the cache node; a later `sentinel upgrade --cache-ip IP` updates from it)")
	}
	if selfUpdatedFrom != "" {
		// This is the build a self-update just put in place.
		os.Unsetenv(selfupdate.UpdatedFromEnv) // not for the agents and hooks we start
		log.Info("self-update done: this build continues", zap.String("version", version), zap.String("updated_from", selfUpdatedFrom))
		fmt.Fprintf(o.stderr, "sentinel: now running sentinel %s (updated from %s); the previous build is kept as %s.old\n", version, selfUpdatedFrom, executableName())
		return alone, nil
	}
	if o.noSelfUpdate || o.dryRun || o.downloadOnly {
		return false, nil
	}
	if !o.updateSelf && !selfupdate.CheckAutomatically(version) {
		log.Info("self-update not checked: a development build is only replaced with --update-self", zap.String("version", version))
		return false, nil
	}
	fail := func(err error) (bool, error) {
		if o.updateSelf {
			return false, err
		}
		fmt.Fprintf(o.stderr, "sentinel: warning: self-update skipped, going on with sentinel %s: %v\n", version, err)
		log.Warn("self-update skipped", zap.Error(err))
		return false, nil
	}

	if inv.TrustRoot() == "" {
		// The builds document's sha256 is all that vouches for the new
		// executable: without signatures it vouches for nothing.
		err := usagef("self-update needs signed channel metadata: set trust.root in %s (README: Signed channels), or pass --no-self-update", inv.Path())
		return fail(err)
	}
	channelURL, artCache := inv.Channel, cacheURL
	if o.resume && cacheURL == "" && !o.noCache {
		last, _, err := rollout.Runs{Dir: inv.State()}.Latest()
		if err == nil && last != nil && !last.Finished() {
			if last.Plan.Offline && !o.updateSelf {
				log.Info("self-update not checked: the run downloads nothing (--skip-download)")
				return false, nil
			}
			artCache = last.Plan.CacheURL
		}
	}
	if artCache != "" {
		channelURL = artCache + "/channel/index.json"
	}

	// Hold the run lock while the executable changes: no run of this
	// cluster starts or goes on meanwhile, nor does a second self-update.
	lock, err := rollout.Runs{Dir: inv.State()}.Lock(cmdline)
	if err != nil {
		var le *resume.LockedError
		if errors.As(err, &le) {
			return false, err // the run itself would stop here just the same
		}
		return fail(err)
	}
	defer lock.Release()

	mt := o.metadataTrust(log)
	trustOpts, err := mt.channelOptions(inv)
	if err != nil {
		return fail(err)
	}
	opts := trustOpts
	if artCache != "" {
		opts = append(opts, release.WithoutProxy())
	}
	ch, err := release.OpenChannel(ctx, channelURL, opts...)
	if err != nil {
		return fail(fmt.Errorf("reading the channel for sentinel builds: %w", err))
	}
	builds, found, err := ch.SentinelBuilds(ctx)
	if err != nil {
		return fail(err)
	}
	if err := mt.accept(ch); err != nil {
		return fail(err)
	}
	if !found {
		builds = nil
	}
	d := selfupdate.Decide(version, builds, runtime.GOOS, runtime.GOARCH, o.updateSelf)
	log.Info("self-update check", zap.String("running", version), zap.Bool("update", d.Update), zap.String("reason", d.Reason))
	if !d.Update {
		if o.updateSelf {
			fmt.Fprintf(o.stderr, "sentinel: %s\n", d.Reason)
		}
		return alone, nil
	}
	exe, err := selfupdate.Executable()
	if err != nil {
		return fail(err)
	}
	u := &selfupdate.Updater{Path: exe, StoreDir: filepath.Join(inv.State(), "self-update")}
	from := d.Build.Artifact.URL
	if artCache != "" {
		from = artCache + "/artifacts/sha256/" + d.Build.Artifact.SHA256
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // the cache node is on the cluster's network
		u.HTTP = &http.Client{Transport: t}
	}
	fmt.Fprintf(o.stderr, "sentinel: self-update: %s; fetching it from %s\n", d.Reason, from)
	stored, err := u.Fetch(ctx, from, d.Build)
	if err != nil {
		return fail(err)
	}
	if err := u.Replace(ctx, stored, d.Build); err != nil {
		log.Error("self-update failed", zap.String("build", d.Build.Version), zap.Error(err))
		var ce *selfupdate.CheckError
		if errors.As(err, &ce) && !alone {
			// A broken build is the publisher's problem, not the run's.
			fmt.Fprintf(o.stderr, "sentinel: warning: %v; going on with sentinel %s\n", err, version)
			return false, nil
		}
		return fail(err)
	}
	log.Info("self-update: replaced the executable", zap.String("path", exe), zap.String("from", version), zap.String("to", d.Build.Version), zap.String("old", u.OldPath()))
	if alone {
		fmt.Fprintf(o.stdout, "Updated sentinel %s to %s at %s (the previous build is kept as %s).\n", version, d.Build.Version, exe, u.OldPath())
		return true, nil
	}
	fmt.Fprintf(o.stderr, "sentinel: self-update: %s is now sentinel %s (the previous build is kept as %s); re-executing it\n", exe, d.Build.Version, u.OldPath())
	lock.Release()
	return false, selfupdate.Exec(exe, os.Args, selfupdate.Environ(os.Environ(), version))
}

// noteBinary records in the journal of a run this process goes on with
// which build it is, when another build ran it before (after a
// self-update, or with a binary put back by hand).
func noteBinary(o upgradeOptions, log *zap.Logger, j *resume.Journal, run *rollout.Run) error {
	wrote, err := rollout.NoteBinary(j, run, version, selfUpdatedFrom)
	if err != nil {
		return err
	}
	if wrote {
		bs := run.Binaries()
		log.Info("run goes on with another sentinel build", zap.String("run", run.ID), zap.String("version", version), zap.String("updated_from", selfUpdatedFrom))
		if len(bs) >= 2 {
			fmt.Fprintf(o.stderr, "sentinel: run %s goes on with sentinel %s (it ran with %s until now)\n", run.ID, version, bs[len(bs)-2].Version)
		}
	}
	return nil
}

func executableName() string {
	if exe, err := selfupdate.Executable(); err == nil {
		return exe
	}
	return "sentinel"
}

// sentinelBuildForCache reads the channel's sentinel builds (verified like
// every document, and so kept with the documents a cache node receives)
// and returns the newest build for this platform: --download-only puts it
// in the cache node, from which a later run with --cache-ip updates
// sentinel. commit raises the trusted version of the builds document.
func sentinelBuildForCache(ctx context.Context, ch *release.Channel, commit bool) (release.SentinelBuild, bool, error) {
	builds, found, err := ch.SentinelBuilds(ctx)
	if err != nil || !found {
		return release.SentinelBuild{}, false, err
	}
	if v := ch.Verifier(); v != nil && commit {
		if err := v.Commit(); err != nil {
			return release.SentinelBuild{}, false, fmt.Errorf("recording the channel's trusted versions: %w", err)
		}
	}
	b, ok := builds.Newest(runtime.GOOS, runtime.GOARCH)
	return b, ok, nil
}
