package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"go.uber.org/zap"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/selfupdate"
)

// selfUpdate is the self-update phase: when the channel offers a newer
// signed sentinel build for this platform, it replaces the running
// executable with it and re-executes it with the same arguments, so that
// the new build does the run (a --resume goes on with the same journal).
// --update-self alone (no VERSION, no --resume) updates and stops.
//
// Automatically (without --update-self) only numbered builds look, and a
// failure to look or to update is a warning: the run goes on with the
// running build. With --update-self a failure is an error.
func (r *Run) selfUpdate(ctx context.Context) error {
	alone := r.UpdateSelf && r.Job.Target == "" && !r.Resume
	done := func() error {
		if alone {
			return errDone
		}
		return nil
	}
	if r.UpdatedFrom != "" {
		// This is the build a self-update just put in place.
		os.Unsetenv(selfupdate.UpdatedFromEnv) // not for the agents and hooks we start
		r.Log.Info("self-update done: this build continues", zap.String("version", r.Version), zap.String("updated_from", r.UpdatedFrom))
		r.Printer.Notef("sentinel: now running sentinel %s (updated from %s); the previous build is kept as %s.old", r.Version, r.UpdatedFrom, executableName())
		return done()
	}
	if r.NoSelfUpdate {
		return nil
	}
	if !r.UpdateSelf && !selfupdate.CheckAutomatically(r.Version) {
		r.Log.Info("self-update not checked: a development build is only replaced with --update-self", zap.String("version", r.Version))
		return nil
	}
	if r.offline && !r.UpdateSelf {
		r.Log.Info("self-update not checked: the run downloads nothing (--skip-download)")
		return nil
	}
	fail := func(err error) error {
		if r.UpdateSelf {
			return err
		}
		r.Printer.Notef("sentinel: warning: self-update skipped, going on with sentinel %s: %v", r.Version, err)
		r.Log.Warn("self-update skipped", zap.Error(err))
		return nil
	}
	if r.Inventory.TrustRoot() == "" {
		// The builds document's sha256 is all that vouches for the new
		// executable: without signatures it vouches for nothing.
		return fail(usagef("self-update needs signed channel metadata: set trust.root in %s (docs/operator.md: Signed channels), or pass --no-self-update", r.Inventory.Path()))
	}
	ch, err := r.Channel(ctx)
	if err != nil {
		return fail(fmt.Errorf("reading the channel for sentinel builds: %w", err))
	}
	if r.tuf.Kept() {
		return fail(errors.New("no source of the channel answers, and the metadata kept from staging offers no build to fetch"))
	}
	builds, found, err := ch.SentinelBuilds(ctx)
	if err != nil {
		return fail(err)
	}
	if !found {
		builds = nil
	}
	d := selfupdate.Decide(r.Version, builds, runtime.GOOS, runtime.GOARCH, r.UpdateSelf)
	r.Log.Info("self-update check", zap.String("running", r.Version), zap.Bool("update", d.Update), zap.String("reason", d.Reason))
	if !d.Update {
		if r.UpdateSelf {
			r.Printer.Notef("sentinel: %s", d.Reason)
		}
		return done()
	}
	return r.replaceSelf(ctx, d, alone, fail)
}

func (r *Run) replaceSelf(ctx context.Context, d selfupdate.Decision, alone bool, fail func(error) error) error {
	exe, err := selfupdate.Executable()
	if err != nil {
		return fail(err)
	}
	u := &selfupdate.Updater{Path: exe, StoreDir: filepath.Join(r.Inventory.State(), "self-update")}
	from := r.Source.ArtifactURL(d.Build.Artifact)
	if r.Source.FromCache() || r.Source.RegistryFetch() != nil {
		u.HTTP = r.Source.HTTPClient() // the cache daemon's pin, or the registry's CA and credentials
	}
	r.Printer.Notef("sentinel: self-update: %s; fetching it from %s", d.Reason, from)
	stored, err := u.Fetch(ctx, from, d.Build)
	if err != nil {
		return fail(err)
	}
	if err := u.Replace(ctx, stored, d.Build); err != nil {
		r.Log.Error("self-update failed", zap.String("build", d.Build.Version), zap.Error(err))
		var ce *selfupdate.CheckError
		if errors.As(err, &ce) && !alone {
			// A broken build is the publisher's problem, not the run's.
			r.Printer.Notef("sentinel: warning: %v; going on with sentinel %s", err, r.Version)
			return nil
		}
		return fail(err)
	}
	r.Log.Info("self-update: replaced the executable", zap.String("path", exe), zap.String("from", r.Version), zap.String("to", d.Build.Version), zap.String("old", u.OldPath()))
	if alone {
		r.Printer.Textf("Updated sentinel %s to %s at %s (the previous build is kept as %s).\n", r.Version, d.Build.Version, exe, u.OldPath())
		return errDone
	}
	r.Printer.Notef("sentinel: self-update: %s is now sentinel %s (the previous build is kept as %s); re-executing it", exe, d.Build.Version, u.OldPath())
	// The new build takes the run lock again; the journal is not open yet.
	if r.lock != nil {
		r.lock.Release()
		r.lock = nil
	}
	// The exec skips the run's end: its agents end here, not as zombies
	// of the new build. The lease is left held, not renewed: the new
	// build, from the same state directory, takes it over.
	if r.lease != nil {
		r.lease.stop()
		<-r.lease.done
		r.lease = nil
	}
	cluster.CloseAll(r.Transports)
	r.Transports = nil
	r.Printer.Close()
	return selfupdate.Exec(exe, r.Command, selfupdate.Environ(os.Environ(), r.Version))
}

func executableName() string {
	if exe, err := selfupdate.Executable(); err == nil {
		return exe
	}
	return "sentinel"
}

// newestBuild reads the channel's sentinel builds (verified like every
// document, and so kept with the documents a cache node receives) and
// returns the newest build for this platform: --download-only puts it in
// the cache node, from which a later run with --cache-ip updates sentinel.
func newestBuild(ctx context.Context, ch *release.Channel) (release.SentinelBuild, bool, error) {
	builds, found, err := ch.SentinelBuilds(ctx)
	if err != nil || !found {
		return release.SentinelBuild{}, false, err
	}
	b, ok := builds.Newest(runtime.GOOS, runtime.GOARCH)
	return b, ok, nil
}
