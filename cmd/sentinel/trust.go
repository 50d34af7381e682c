package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/steps"
	"github.com/sentinel-paas/sentinel/trust"
)

// metadataTrust is a run's policy for the channel's metadata: every
// document verifies against the cluster file's trust.root, or (without
// one) the run says loudly that nothing is verified.
type metadataTrust struct {
	allowExpired bool
	// readOnly: verify against the trusted state but do not raise it
	// (--dry-run and preflight change nothing, not even that).
	readOnly bool
	log      *zap.Logger
	stderr   io.Writer
}

func (mt *metadataTrust) warn(msg string, fields ...zap.Field) {
	if mt == nil {
		return
	}
	if mt.stderr != nil {
		fmt.Fprintln(mt.stderr, "sentinel: warning: "+msg)
	}
	if mt.log != nil {
		mt.log.Warn(msg, fields...)
	}
}

func addAllowExpiredFlag(cmd *cobra.Command, allow *bool) {
	cmd.Flags().BoolVar(allow, "allow-expired-metadata", false, "accept expired channel metadata (signatures and versions are still checked); each document accepted so is reported and logged. For air-gapped sites that knowingly run on older metadata")
}

// metadataTrust is the policy the options give, logging to log.
func (o upgradeOptions) metadataTrust(log *zap.Logger) *metadataTrust {
	return &metadataTrust{allowExpired: o.allowExpired, readOnly: o.dryRun, log: log, stderr: o.stderr}
}

// channelOptions returns the option that verifies the channel, with its
// verifier, or none when the cluster file sets no trust.root.
func (mt *metadataTrust) channelOptions(inv *cluster.Inventory) ([]release.ChannelOption, error) {
	anchorPath := inv.TrustRoot()
	if anchorPath == "" {
		mt.warn(fmt.Sprintf("channel metadata is not verified: set trust.root in %s to the channel's root.json, obtained from its publisher (README: Signed channels)", inv.Path()))
		return nil, nil
	}
	anchor, err := os.ReadFile(anchorPath)
	if err != nil {
		return nil, usagef("trust.root in %s: %v (it is the channel's root.json, obtained from its publisher out of band)", inv.Path(), err)
	}
	store, err := trust.OpenStore(inv.State(), inv.TrustChannelID())
	if err != nil {
		return nil, usagef("trust.channel_id in %s: %v", inv.Path(), err)
	}
	allow := mt != nil && mt.allowExpired
	v, err := trust.NewVerifier(store, anchor, trust.Options{AllowExpired: allow})
	if err != nil {
		return nil, err
	}
	if allow && mt.log != nil {
		mt.log.Warn("--allow-expired-metadata: expired channel metadata is accepted for this run")
	}
	return []release.ChannelOption{release.WithTrust(v)}, nil
}

// accept reports what was accepted only because expired metadata was
// allowed, then raises the trusted versions to those just verified, so
// that no later run takes older metadata. It runs once every document of
// the plan has verified, before anything changes.
func (mt *metadataTrust) accept(ch *release.Channel) error {
	v := ch.Verifier()
	if v == nil {
		return nil
	}
	for _, m := range ch.Verified() {
		if m.Expired {
			mt.warn(fmt.Sprintf("%s expired %s; accepted only because of --allow-expired-metadata", m.Name, m.Expires.Format(time.RFC3339)),
				zap.String("doc", m.Name), zap.Int64("version", m.Version), zap.Time("expired", m.Expires))
		}
		if m.RootExpired {
			mt.warn(fmt.Sprintf("the trusted root expired %s; %s accepted only because of --allow-expired-metadata", v.Root().Expires.Format(time.RFC3339), m.Name),
				zap.String("doc", "root.json"), zap.Int64("version", v.Root().Version), zap.Time("expired", v.Root().Expires))
		}
	}
	if mt != nil && mt.readOnly {
		return nil
	}
	if err := v.Commit(); err != nil {
		return fmt.Errorf("recording the channel's trusted versions: %w", err)
	}
	return nil
}

// checkArtifactSizes asks the artifacts' source (the upstream, or the
// cache daemon with --cache-ip) for each artifact's size before anything is
// downloaded, and refuses the run when one differs from its signed
// manifest: a mirror or cache node serving other bytes under the signed
// digest is caught here, with exit code 2, rather than by the first fetch
// once nodes are already being upgraded. Sources that do not answer are
// left to the fetch, which checks size and sha256 as it downloads.
func checkArtifactSizes(ctx context.Context, ch *release.Channel, plan *rollout.Plan, channelURL, cacheURL string) error {
	type job struct {
		name, url string
		size      int64
	}
	names := map[string]string{}
	for _, np := range plan.Nodes {
		for _, s := range np.Steps {
			if s.Op == steps.OpFetch {
				names[s.Request.Artifact.SHA256] = artifactName(s.Request.Artifact.URL, channelURL)
			}
		}
	}
	var jobs []job
	for _, a := range plan.Artifacts() {
		j := job{name: names[a.SHA256], url: a.URL, size: a.Size}
		if cacheURL != "" {
			j.url = cacheURL + "/artifacts/sha256/" + a.SHA256
		}
		jobs = append(jobs, j)
	}
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_, errs[i] = ch.CheckArtifactSize(ctx, j.name, j.url, j.size)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// artifactName is an artifact's path relative to the channel, as
// `sentinel release verify` names it, or its URL when it lives elsewhere.
func artifactName(artifactURL, channelURL string) string {
	base := channelURL[:strings.LastIndex(channelURL, "/")+1]
	if rest, ok := strings.CutPrefix(artifactURL, base); ok && rest != "" {
		return rest
	}
	return artifactURL
}

// explainCacheRefusal adds, to a refusal of a document read from the cache
// node, what the operator can do there: a cache filled by a sentinel that
// kept no .sig files, or one whose documents were changed, is filled again
// from the upstream. The refusal itself stays first, and a *trust.Error.
func explainCacheRefusal(src planSource, target string, err error) error {
	var te *trust.Error
	if src.cacheURL == "" || !errors.As(err, &te) {
		return err
	}
	return fmt.Errorf("%w (read from the cache node %s: fill it again from the upstream with `sentinel upgrade %s --download-only --cache-ip HOST` (`sentinel cache verify` there sets damaged artifacts aside), and if its files were changed there, find out who changed them)",
		err, src.cacheURL, orLatest(target))
}
