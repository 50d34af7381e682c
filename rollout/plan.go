// Package rollout plans an upgrade across the nodes of a cluster and carries
// it out step by step, journaled so that any crash leaves a resumable run.
package rollout

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/source"
	"github.com/sentinel-paas/sentinel/steps"
)

// Plan is everything a run will do, fixed when the run starts and stored in
// its journal, so a resumed run does exactly what the first one meant to.
type Plan struct {
	From string `json:"from"` // the core node's release
	To   string `json:"to"`
	// Source is where nodes fetch artifacts: "upstream", the cache
	// daemon's URL, or "node caches only". Fetch steps keep the upstream
	// URLs; CacheURL and Offline are applied when a fetch runs, so a
	// resumed run may take its artifacts from elsewhere.
	Source   string     `json:"source"`
	CacheURL string     `json:"cache_url,omitempty"`
	Offline  bool       `json:"offline,omitempty"`
	Hops     []string   `json:"hops"` // releases installed in turn
	Force    bool       `json:"force,omitempty"`
	Nodes    []NodePlan `json:"nodes"` // in upgrade order
	// MaxInFlight is how many nodes may be upgraded at once (0 or 1: one
	// at a time), under the rules of schedule.go.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// Canaries is how many nodes of each redundant role go first, each
	// alone, before the others of the role (schedule.go).
	Canaries int `json:"canaries,omitempty"`
	// Last is a node that goes alone after every other, the core too: the
	// machine the run runs on, when a maintenance run reboots it.
	Last string `json:"last,omitempty"`
	// WatchTime is how long every component of a node must stay healthy
	// after its start before the node counts as done (its watch step).
	WatchTime release.Duration `json:"watch_time,omitempty"`
	// MaxFailures is how many nodes may fail (and be rolled back) while
	// the run goes on with the others (update.go).
	MaxFailures int `json:"max_failures,omitempty"`
	// Maintenance: the run switches the cluster's maintenance mode on
	// before its first change and off after its last (maintenance.go).
	Maintenance bool `json:"maintenance,omitempty"`
	// Closing is the closing restart after the core (restart.go).
	Closing []NodePlan `json:"closing,omitempty"`
	// Finally runs once every node is done: clean-up on the cache node.
	Finally *NodePlan `json:"finally,omitempty"`
	// Kind is what the run does: "" for an upgrade, or a patch run
	// ("patch-install", "patch-revert"; see package patches), whose
	// Patches it names.
	Kind    string   `json:"kind,omitempty"`
	Patches []string `json:"patches,omitempty"`
	// ExpiredMetadata records the channel metadata the run accepted only
	// because of --allow-expired-metadata.
	ExpiredMetadata []string `json:"expired_metadata,omitempty"`
}

// NodePlan is one node's share of the run.
type NodePlan struct {
	Node  string   `json:"node"`
	Roles []string `json:"roles"`
	From  string   `json:"from"`
	Skip  string   `json:"skip,omitempty"` // why the node has nothing to do
	Steps []Step   `json:"steps"`
}

// Step is one idempotent action on one node.
type Step struct {
	ID        string `json:"id"` // unique within the node, e.g. "3.4.2/nats/start"
	Op        string `json:"op"`
	Release   string `json:"release,omitempty"`
	Component string `json:"component,omitempty"`
	// Version is what the step installs or starts; From is what ran before,
	// where a rollback returns to.
	Version string        `json:"version,omitempty"`
	From    string        `json:"from,omitempty"`
	Request steps.Request `json:"request"`
}

// phase tells how a failure of the step is handled.
func (s Step) inUpgrade() bool {
	switch s.Op {
	case steps.OpInstall, steps.OpStop, steps.OpMigrate, steps.OpSwitch, steps.OpStart, steps.OpHealth, OpWatch,
		steps.OpAction, steps.OpReboot:
		return true
	}
	return false
}

// Channel is what planning needs from the release channel.
type Channel interface {
	Manifest(ctx context.Context, version string) (*release.Manifest, error)
	Path(from, to string) ([]string, error)
	Latest() string
}

// PlanInput is what a plan is made from.
type PlanInput struct {
	Inventory *cluster.Inventory
	Facts     map[string]*steps.Facts // by node name
	Target    string                  // "" for the channel's latest release
	Force     bool
	RunID     string
	// CacheURL, when set, is the cache daemon the nodes fetch every
	// artifact from, by digest, instead of the upstream.
	CacheURL string
	// SkipDownload: use only what the node caches already hold.
	SkipDownload bool
	// DrainDeadline bounds each DEA's drain (0: the default, 10 minutes).
	DrainDeadline time.Duration
	// RoleOrder overrides the order of roles (--role-order); the core node
	// is last all the same.
	RoleOrder []string
	// Only limits the run to these nodes (--node); the others are skipped.
	Only []string
	// ClosingRestart: after the core, restart every node upgraded before
	// it (restart.go).
	ClosingRestart bool
	// Unanswered are the nodes that could not tell their facts: a node
	// outside the run (--node) need not answer.
	Unanswered map[string]error
	// Update: max in flight, canaries, watch time and failure budget.
	Update Update
}

// MissingArtifactsError: --skip-download was asked and a node lacks
// artifacts. Nothing was changed.
type MissingArtifactsError struct {
	Node    string
	Missing []string // "component version (sha256 ...)"
	Damaged []string // present, but not with their sha256
}

func (e *MissingArtifactsError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("lacks %d artifact(s) in its cache: %s", len(e.Missing), strings.Join(e.Missing, ", ")))
	}
	if len(e.Damaged) > 0 {
		parts = append(parts, fmt.Sprintf("has %d damaged artifact(s) in its cache: %s", len(e.Damaged), strings.Join(e.Damaged, ", ")))
	}
	return fmt.Sprintf("node %s %s, and --skip-download forbids downloading: nothing was changed. Run without --skip-download, or with --cache-ip to fetch them from the cache node",
		e.Node, strings.Join(parts, "; and "))
}

// UsageError is bad input from the operator: nothing was changed.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// MakePlan decides what each node will do. It reads manifests but changes
// nothing.
func MakePlan(ctx context.Context, ch Channel, in PlanInput) (*Plan, error) {
	core := in.Inventory.Core()
	coreFacts := in.Facts[core.Name]
	if coreFacts == nil || coreFacts.Record == nil {
		return nil, &UsageError{Msg: fmt.Sprintf("node %s: cannot tell its release: %s", core.Name, recordProblem(coreFacts))}
	}
	if err := in.Unanswered[core.Name]; coreFacts == nil && err != nil {
		return nil, fmt.Errorf("reading node facts: %w", err)
	}
	from := coreFacts.Record.Release
	to := in.Target
	if to == "" {
		to = ch.Latest()
	}
	toV, err := release.ParseVersion(to)
	if err != nil {
		return nil, &UsageError{Msg: fmt.Sprintf("%q is not a release version: %v", to, err)}
	}
	plan := &Plan{From: from, To: to, Force: in.Force, CacheURL: in.CacheURL, Offline: in.SkipDownload}
	plan.Source = plan.DefaultSource().String()
	manifests := map[string]*release.Manifest{}
	manifest := func(v string) (*release.Manifest, error) {
		if m, ok := manifests[v]; ok {
			return m, nil
		}
		m, err := ch.Manifest(ctx, v)
		if err != nil {
			return nil, err
		}
		manifests[v] = m
		return m, nil
	}
	// Make sure the target exists before judging versions.
	if _, err := manifest(to); err != nil {
		return nil, err
	}

	for _, name := range in.Only {
		if _, ok := in.Inventory.Node(name); !ok {
			return nil, &UsageError{Msg: fmt.Sprintf("--node %s: the cluster file has no such node", name)}
		}
	}
	for _, r := range in.RoleOrder {
		if !release.KnownRole(r) {
			return nil, &UsageError{Msg: fmt.Sprintf("--role-order: unknown role %q", r)}
		}
	}
	for _, n := range OrderBy(in.Inventory.Nodes, in.RoleOrder) {
		f := in.Facts[n.Name]
		if err := in.Unanswered[n.Name]; f == nil && err != nil && len(in.Only) > 0 && !slices.Contains(in.Only, n.Name) && !n.HasRole(release.RolePrimary) {
			plan.Nodes = append(plan.Nodes, NodePlan{Node: n.Name, Roles: n.Roles, Skip: fmt.Sprintf("not selected (--node); it did not answer: %v", err)})
			continue
		}
		if err := in.Unanswered[n.Name]; f == nil && err != nil {
			return nil, fmt.Errorf("reading node facts: %w", err)
		}
		if f == nil || f.Record == nil {
			return nil, &UsageError{Msg: fmt.Sprintf("node %s: cannot tell its release: %s", n.Name, recordProblem(f))}
		}
		np := NodePlan{Node: n.Name, Roles: n.Roles, From: f.Record.Release}
		nodeV, err := release.ParseVersion(np.From)
		if err != nil {
			return nil, &UsageError{Msg: fmt.Sprintf("node %s records release %q, which is not a version", n.Name, np.From)}
		}
		var hops []string
		switch c := nodeV.Compare(toV); {
		case c > 0:
			return nil, &UsageError{Msg: fmt.Sprintf("node %s is on %s, newer than %s: sentinel does not downgrade (restore a backup or snapshot instead)", n.Name, np.From, to)}
		case c == 0 && !in.Force:
			np.Skip = "already on " + to + " (use --force to reinstall)"
		case c == 0:
			hops = []string{to}
		default:
			hops, err = ch.Path(np.From, to)
			if err != nil {
				return nil, err
			}
		}
		if len(in.Only) > 0 && !slices.Contains(in.Only, n.Name) && np.Skip == "" {
			np.Skip, hops = "not selected (--node)", nil
		}
		if len(hops) > len(plan.Hops) {
			plan.Hops = hops
		}
		if err := planNode(ctx, &np, n, f, hops, manifest, in); err != nil {
			return nil, err
		}
		plan.Nodes = append(plan.Nodes, np)
	}
	in.Update.apply(plan)
	if in.ClosingRestart && !plan.NothingToDo() {
		m, err := manifest(to)
		if err != nil {
			return nil, err
		}
		planClosing(plan, in.Inventory, m, in.DrainDeadline)
	}
	// Through the cluster's own cache node (the one --cache-ip names), its
	// store can drop what no release from the target on needs.
	if c := in.Inventory.Cache; c != nil && in.CacheURL != "" && !plan.NothingToDo() && cacheIsNode(in.CacheURL, in.Inventory, c.Node) {
		plan.Finally = &NodePlan{Node: c.Node, Steps: []Step{{ID: "finally/prune-cache", Op: steps.OpPruneCache, Release: to,
			Request: steps.Request{CacheDir: c.Dir, ChannelDir: c.ChannelDirectory(), KeepFrom: to}}}}
	}
	return plan, nil
}

// cacheIsNode reports whether the cache URL points at the named node.
func cacheIsNode(cacheURL string, inv *cluster.Inventory, node string) bool {
	u, err := url.Parse(cacheURL)
	n, ok := inv.Node(node)
	return err == nil && ok && u.Hostname() == n.Address
}

// NothingToDo reports whether every node is already where the plan goes.
func (p *Plan) NothingToDo() bool {
	for _, n := range p.Nodes {
		if n.Skip == "" {
			return false
		}
	}
	return true
}

func recordProblem(f *steps.Facts) string {
	if f == nil {
		return "no facts"
	}
	return f.RecordError
}

func planNode(ctx context.Context, np *NodePlan, n cluster.Node, f *steps.Facts, hops []string,
	manifest func(string) (*release.Manifest, error), in PlanInput) error {
	running := map[string]string{}
	for c, v := range f.Current {
		running[c] = v
	}
	var fetches, upgrades []Step
	fetched := map[string]bool{}
	// A DEA is retired (its apps moved to the other DEAs) before any of its
	// components stops, and takes instances again once restarted.
	isDEA := n.HasRole(release.RoleDEA) && len(hops) > 0
	if isDEA {
		upgrades = append(upgrades, Step{ID: "retire", Op: steps.OpRetire,
			Request: steps.Request{DrainDeadline: release.Duration(in.DrainDeadline)}})
	}
	var last *release.Manifest
	for _, hop := range hops {
		m, err := manifest(hop)
		if err != nil {
			return err
		}
		last = m
		upgrades = append(upgrades, Step{ID: hop + "/backup", Op: steps.OpBackup, Release: hop,
			Request: steps.Request{BackupID: in.RunID + "-" + hop}})
		versions := map[string]string{}
		for _, c := range m.Components {
			if !c.AppliesTo(n.Roles) {
				continue
			}
			versions[c.Name] = c.Version
			if !fetched[c.Artifact.SHA256] {
				fetched[c.Artifact.SHA256] = true
				fetches = append(fetches, Step{ID: hop + "/" + c.Name + "/fetch", Op: steps.OpFetch, Release: hop,
					Component: c.Name, Version: c.Version,
					Request: steps.Request{Component: c.Name, Version: c.Version, Artifact: c.Artifact}})
			}
			from := running[c.Name]
			if from == c.Version && !in.Force {
				continue
			}
			req := steps.Request{Component: c.Name, Version: c.Version, FromVersion: from, Artifact: c.Artifact, Hooks: c.Hooks}
			for _, op := range []string{steps.OpInstall, steps.OpStop, steps.OpMigrate, steps.OpSwitch, steps.OpStart, steps.OpHealth} {
				upgrades = append(upgrades, Step{ID: hop + "/" + c.Name + "/" + op, Op: op, Release: hop,
					Component: c.Name, Version: c.Version, From: from, Request: req})
			}
			running[c.Name] = c.Version
		}
		if in.Update.WatchTime > 0 && hop == hops[len(hops)-1] {
			upgrades = append(upgrades, watchStep(hop, n, m))
		}
		upgrades = append(upgrades, Step{ID: hop + "/commit", Op: steps.OpCommit, Release: hop,
			Request: steps.Request{Release: hop, Components: versions}})
	}
	if last != nil {
		var items []steps.RestartItem
		for _, c := range last.Components {
			if c.AppliesTo(n.Roles) {
				items = append(items, steps.RestartItem{Component: c.Name, Version: c.Version, Hooks: c.Hooks})
			}
		}
		upgrades = append(upgrades, Step{ID: "restart", Op: steps.OpRestart, Release: last.Version,
			Request: steps.Request{Restart: items}})
		if isDEA {
			upgrades = append(upgrades, Step{ID: "unretire", Op: steps.OpUnretire, Release: last.Version})
		}
		// The new release is in place: its artifacts are all the node cache
		// needs to keep (rollback uses the unpacked releases, not archives).
		var keep []string
		releases := map[string][]string{} // the new release, and the one the node ran before, for a rollback
		for _, c := range last.Components {
			if c.AppliesTo(n.Roles) {
				keep = append(keep, c.Artifact.SHA256)
				releases[c.Name] = []string{c.Version}
				if v := f.Current[c.Name]; v != "" && v != c.Version {
					releases[c.Name] = append(releases[c.Name], v)
				}
			}
		}
		upgrades = append(upgrades, Step{ID: "prune", Op: steps.OpPrune, Release: last.Version, Request: steps.Request{Keep: keep, KeepReleases: releases}})
	}
	np.Steps = append(fetches, upgrades...)
	return nil
}

// OpWatch is the step that keeps asking a node's components for their
// health during the watch time. The orchestrator runs it (through the
// agent's health operation), before the commit, so a failure rolls the
// node back like any other.
const OpWatch = "watch"

func watchStep(hop string, n cluster.Node, m *release.Manifest) Step {
	var items []steps.RestartItem
	for _, c := range m.Components {
		if c.AppliesTo(n.Roles) {
			items = append(items, steps.RestartItem{Component: c.Name, Version: c.Version, Hooks: c.Hooks})
		}
	}
	return Step{ID: hop + "/watch", Op: OpWatch, Release: hop, Request: steps.Request{Restart: items}}
}

// DefaultSource is where fetch steps take artifacts from, as planned.
func (p *Plan) DefaultSource() source.Fetch {
	return source.Fetch{CacheURL: p.CacheURL, Offline: p.Offline}
}

// FetchRequest points a fetch step's request at where artifacts come from.
func FetchRequest(f source.Fetch, req steps.Request) steps.Request {
	if f.Offline {
		req.Offline = true
		return req
	}
	planned := req.Artifact
	req.Artifact.URL, req.Direct = f.ArtifactURL(req.Artifact)
	switch {
	case f.CacheURL == "" && f.Registry != nil:
		a := f.Registry.Access
		req.Registry = &a
	case req.Direct && f.CachePeer.TLS():
		p := f.CachePeer
		req.CachePeer = &p
	}
	if f.CacheURL == "" {
		for _, alt := range f.Alternatives(planned) {
			req.Fallbacks = append(req.Fallbacks, steps.FetchSource{URL: alt.URL, Direct: alt.Registry != nil, Registry: alt.Registry})
		}
	}
	return req
}

// NeedsProxy says whether a fetch request reaches a source through the
// operator's proxy: its own URL or a fallback that is not direct.
func NeedsProxy(req steps.Request) bool {
	if req.Offline {
		return false
	}
	if !req.Direct {
		return true
	}
	for _, f := range req.Fallbacks {
		if !f.Direct {
			return true
		}
	}
	return false
}

// WorkingNodes names the nodes that have something to do, in plan order.
func (p *Plan) WorkingNodes() []string {
	var out []string
	for _, np := range p.Nodes {
		if np.Skip == "" {
			out = append(out, np.Node)
		}
	}
	return out
}

// Artifacts lists every artifact the plan fetches, once each, in plan order.
func (p *Plan) Artifacts() []release.Artifact {
	seen := map[string]bool{}
	var out []release.Artifact
	for _, np := range p.Nodes {
		for _, s := range np.Steps {
			if s.Op == steps.OpFetch && !seen[s.Request.Artifact.SHA256] {
				seen[s.Request.Artifact.SHA256] = true
				out = append(out, s.Request.Artifact)
			}
		}
	}
	return out
}

// roleOrder is the product's default: DEAs first, the core's roles last.
var roleOrder = []string{release.RoleDEA, release.RoleController, release.RoleRouter, release.RoleBase, release.RolePrimary}

// Order sorts nodes for an upgrade: by the first role of roleOrder they
// have, nodes with none of these after them, and the core node always last.
func Order(nodes []cluster.Node) []cluster.Node { return OrderBy(nodes, nil) }

// OrderBy is Order with another role order (nil: the product's).
func OrderBy(nodes []cluster.Node, roles []string) []cluster.Node {
	if len(roles) == 0 {
		roles = roleOrder
	}
	rank := func(n cluster.Node) int {
		if n.HasRole(release.RolePrimary) {
			return len(roles) + 1
		}
		for i, r := range roles {
			if n.HasRole(r) {
				return i
			}
		}
		return len(roles)
	}
	out := append([]cluster.Node(nil), nodes...)
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}
