package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sentinel-paas/sentinel/channel"
	"github.com/sentinel-paas/sentinel/cluster"
)

// channelUnreachable: the channel (upstream or cache daemon) did not
// answer, or answered with a server error: not a refusal of what it says.
func channelUnreachable(err error) bool {
	var fe *channel.FetchError
	return errors.As(err, &fe) && (fe.Status == 0 || fe.Status >= 500)
}

// markWithoutCatalog chooses the nodes `patch mark` changes when the patch
// catalog cannot be read: a record is what is changed, so the nodes' own
// records are enough to forget a patch, and the nodes named with --node
// (on the core's release) to record one. What the catalog would have
// checked (the patch exists, its roles) is said to be unchecked.
func markWithoutCatalog(ctx context.Context, r *Run, only []string, name string, installed bool, cause error) (*patchRead, []cluster.Node, error) {
	if err := r.GatherFacts(ctx); err != nil {
		return nil, nil, err
	}
	core := r.Facts[r.Inventory.Core().Name]
	if core == nil || core.Record == nil {
		return nil, nil, fmt.Errorf("the patch catalog cannot be read (%w), and node %s cannot tell its release", cause, r.Inventory.Core().Name)
	}
	pr := &patchRead{release: core.Record.Release}
	if installed && len(only) == 0 {
		return nil, nil, usagef("the patch catalog cannot be read (%v), so sentinel cannot tell which nodes patch %s concerns: name them with --node, or read the catalog from the cache node (--cache-ip, or the cache section of the cluster file)", cause, name)
	}
	var targets []cluster.Node
	for _, n := range r.Inventory.Nodes {
		f := r.Facts[n.Name]
		switch {
		case len(only) > 0 && !slices.Contains(only, n.Name):
		case f == nil || f.Record == nil || f.Record.Release != pr.release:
			if len(only) > 0 {
				return nil, nil, usagef("node %s is not on release %s: patch %s does not apply to it", n.Name, pr.release, name)
			}
		case installed || slices.Contains(f.Record.Patches, name):
			targets = append(targets, n)
		}
	}
	if len(targets) == 0 {
		return nil, nil, usagef("no node records patch %s: nothing to mark", name)
	}
	var names []string
	for _, n := range targets {
		names = append(names, n.Name)
	}
	r.warn(fmt.Sprintf("the patch catalog cannot be read (%v): patch %s is marked on %s as asked, unchecked against the catalog", cause, name, strings.Join(names, ", ")))
	return pr, targets, nil
}
