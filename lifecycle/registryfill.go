package lifecycle

import (
	"fmt"
	"strings"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/rollout"
)

// registryFill is a download-only run of a cluster that reads a registry.
// The cache daemon cannot read or fill a registry, and which registry to
// fill is not in the cluster file (a pull-through mirror fills itself and
// takes no push), so such a run plans, to know the releases, and then
// refuses with the `sentinel channel copy` command that fills the
// registry, verified, with exactly those releases.
type registryFill struct {
	from     string   // the channel, which the copy reads
	into     []string // the registries among the mirrors, in order
	root     string
	settings [2]string // --registry-auth, --registry-ca
	// cached: the cluster file names a cache node, which a run would read
	// by default; the run that follows the copy must say --no-cache.
	cached bool
}

// registryFillFor is nil when neither the channel nor a mirror is a
// registry. A registry as the channel, with no registry mirror, has
// nothing to fill: it is refused at once.
func registryFillFor(inv *cluster.Inventory) (*registryFill, error) {
	f := &registryFill{from: inv.Channel, root: inv.TrustRoot()}
	for _, m := range inv.Mirrors {
		if oci.IsRef(m) {
			f.into = append(f.into, m)
		}
	}
	switch {
	case len(f.into) > 0:
	case oci.IsRef(inv.Channel):
		argv := append([]string{"sentinel", "channel", "copy", inv.Channel, "oci://HOST[:PORT]/REPO", "--root", f.root}, registryFlags(inv)...)
		return nil, usagef("--download-only fills a cache daemon, which cannot read a registry, and this cluster's channel is the registry %s: the nodes fetch from it directly, so there is nothing to fill; run `sentinel upgrade` without --download-only (to keep a registry of your own, fill it with `%s` and list it in the cluster file's mirrors)",
			inv.Channel, CommandLine(argv))
	default:
		return nil, nil
	}
	s := inv.RegistrySettings()
	f.settings = [2]string{s.AuthFile, s.CAFile}
	f.cached = inv.CacheAddress() != ""
	return f, nil
}

// registryFlags are the cluster file's registry settings as the flags of
// a command it prints.
func registryFlags(inv *cluster.Inventory) []string {
	st := inv.RegistrySettings()
	return (&registryFill{settings: [2]string{st.AuthFile, st.CAFile}}).settingFlags()
}

func (f *registryFill) settingFlags() []string {
	var out []string
	for i, flag := range []string{"--registry-auth", "--registry-ca"} {
		if f.settings[i] != "" {
			out = append(out, flag, f.settings[i])
		}
	}
	return out
}

// refusal is the error of the run once planned: what to run instead.
func (f *registryFill) refusal(plan *rollout.Plan, kind string) error {
	releases := plan.Hops
	if len(releases) == 0 {
		releases = []string{plan.To}
	}
	dst := f.into[len(f.into)-1]
	argv := []string{"sentinel", "channel", "copy", f.from, dst, "--root", f.root}
	for _, v := range releases {
		argv = append(argv, "--release", v)
	}
	argv = append(argv, f.settingFlags()...)
	which := "the registry among its mirrors"
	if len(f.into) > 1 {
		which = fmt.Sprintf("the last of the registries among its mirrors (%s: those before it are taken as pull-through mirrors of it, which fill themselves; copy into any other with the same command)", strings.Join(f.into, ", "))
	}
	what, then := "what "+plan.To+" needs", "sentinel upgrade "+plan.To
	if kind == "patch-download-only" {
		what, then = "the patches of "+plan.To, "sentinel patch install"
	}
	why := "nodes fetch from the registry"
	if f.cached {
		then += " --no-cache"
		why = "nodes fetch from the registry; --no-cache because the cluster file's cache section would send the run to the cache node, which holds nothing of a registry"
	}
	return usagef("--download-only fills a cache daemon, which cannot read or fill a registry, and this cluster reads %s; nothing was changed. Fill it from the channel, verified, with %s (releases %s, their patches, the sentinel builds):\n  %s\nthen run `%s` (%s)",
		which, what, strings.Join(releases, ", "), CommandLine(argv), then, why)
}

// readsRegistry says whether the cluster's channel or one of its mirrors
// is a registry, which the cache daemon can neither read nor be filled
// from.
func readsRegistry(inv *cluster.Inventory) bool {
	if oci.IsRef(inv.Channel) {
		return true
	}
	for _, m := range inv.Mirrors {
		if oci.IsRef(m) {
			return true
		}
	}
	return false
}

// directCommand is the command that runs the job without the cache node.
func directCommand(j *Job) string {
	if j.Kind == "upgrade" {
		return "sentinel upgrade " + orLatest(j.Target) + " --no-cache"
	}
	return j.Advice.Rerun + " --no-cache"
}
