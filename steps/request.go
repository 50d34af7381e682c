package steps

import (
	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/release"
)

// Agent operations. Each is idempotent: running it again after a crash at
// any point converges to the same state.
const (
	OpFacts   = "facts"   // report the node's record and current links
	OpFetch   = "fetch"   // put a verified artifact in the node cache
	OpBackup  = "backup"  // copy <root>/etc aside
	OpInstall = "install" // unpack a cached artifact into releases/<version>
	OpStop    = "stop"    // run the stop hook of the current release
	OpMigrate = "migrate" // run the migrate hook of the new release
	OpSwitch  = "switch"  // point current at releases/<version>
	OpStart   = "start"   // run the start hook of the current release
	OpHealth  = "health"  // run the health hook, with retries
	OpCommit  = "commit"  // record the node's new release in node.json
	OpRestart = "restart" // stop every component, start them again, check health
	OpPrune   = "prune"   // drop node-cache artifacts the node no longer needs
	// OpPruneCache drops, from the cache node's store, what no release from
	// a version on needs.
	OpPruneCache = "prune-cache"
	// OpCheckCache verifies, changing nothing, that the node cache holds
	// the listed artifacts intact (--skip-download).
	OpCheckCache = "check-cache"
	// OpProbe measures, changing nothing, what preflight needs to know
	// about a node: free disk, free memory, reachability, DEA capacity,
	// customisations (see probe.go).
	OpProbe = "probe"
	// OpRetire runs the DEA's drain hook until it is drained, or its
	// deadline; OpUnretire lets it take instances again (see retire.go).
	OpRetire   = "retire"
	OpUnretire = "unretire"
	// OpClock reads the node's clock, for preflight to compare with the
	// orchestrator's (clock.go).
	OpClock = "clock"
	// OpRecordPatch adds a patch to, or removes it from, node.json, with
	// the component versions it leaves in place (see patch.go).
	OpRecordPatch = "record-patch"
)

// Ops lists every operation the agent accepts, in the order of the
// agent's table of operations (agent.go).
var Ops = opNames()

// Request is the JSON document an agent operation reads on stdin. Each
// operation uses the fields it needs.
type Request struct {
	Component   string `json:"component,omitempty"`
	Version     string `json:"version,omitempty"`
	FromVersion string `json:"from_version,omitempty"`
	// Artifact carries the signed unpacked size too: install refuses to
	// unpack past it (0: unknown, and the ratio rule of UnpackLimit applies).
	Artifact release.Artifact `json:"artifact,omitzero"`
	Hooks    release.Hooks    `json:"hooks,omitzero"`
	// Offline fetch: the artifact must already be in the node cache
	// (--skip-download); it is verified, never downloaded.
	Offline bool `json:"offline,omitempty"`
	// Direct fetch: the URL is the cluster's cache daemon, reached without
	// any proxy.
	Direct bool `json:"direct,omitempty"`
	// CachePeer: how this node verifies the cache daemon's certificate
	// (from the cluster file, sent by the orchestrator with each fetch).
	CachePeer *cache.Peer `json:"cache_peer,omitempty"`
	// Registry: the artifact's URL is a registry's blob, reached with this
	// CA and these credentials (sent by the orchestrator with each fetch,
	// like CachePeer; never journaled).
	Registry *oci.Access `json:"registry,omitempty"`
	// Fallbacks: where else to fetch the artifact, in order, when the URL
	// above does not serve it (no answer, a timeout, 5xx, 404): the run's
	// later mirrors, then the channel. A source serving other bytes than
	// signed is a refusal, never passed over.
	Fallbacks  []FetchSource     `json:"fallbacks,omitempty"`
	BackupID   string            `json:"backup_id,omitempty"`
	Release    string            `json:"release,omitempty"`
	Components map[string]string `json:"components,omitempty"`
	// Restart: the node's components in start order.
	Restart []RestartItem `json:"restart,omitempty"`
	// Prune: the digests the node cache keeps, and per component the
	// unpacked releases kept (the new one and the one before it, for a
	// rollback); its other releases that sentinel installed are removed.
	Keep         []string            `json:"keep,omitempty"`
	KeepReleases map[string][]string `json:"keep_releases,omitempty"`
	// PruneCache: the cache node's cache_dir, its channel documents, and
	// the oldest release to keep.
	CacheDir   string `json:"cache_dir,omitempty"`
	ChannelDir string `json:"channel_dir,omitempty"`
	KeepFrom   string `json:"keep_from,omitempty"`
	// Probe: what to measure.
	Probe *ProbeRequest `json:"probe,omitempty"`
	// Retire: how long the DEA may take to drain, or not to wait at all.
	DrainDeadline release.Duration `json:"drain_deadline,omitempty"`
	SkipDrain     bool             `json:"skip_drain,omitempty"`
	// RecordPatch: the patch, and whether node.json is to record it as
	// installed or not (with Release, the release it belongs to, and
	// Components, the versions now in place; none: the record's list of
	// patches alone changes).
	Patch          string `json:"patch,omitempty"`
	PatchInstalled bool   `json:"patch_installed,omitempty"`
	// RestartPending: components the patch switched in without restarting
	// them (--no-restart); node.json keeps them until they are restarted.
	RestartPending []string `json:"restart_pending,omitempty"`
	// Lease: a request for the cluster's run lease (OpLease).
	Lease *LeaseRequest `json:"lease,omitempty"`
	// Proxy is the operator's proxy settings, sent with fetches and probes
	// so that they reach an agent over SSH; nil: the node's environment.
	Proxy *release.ProxySettings `json:"proxy,omitempty"`
	// Retry: the journal shows this step started before and not finished
	// (a crash, a lost node). Only then do stop, start and migrate ask the
	// component's status hook whether their effect is already in place.
	Retry bool `json:"retry,omitempty"`
	// Action and Reboot: rolling node maintenance (maintain.go).
	Action *ActionRequest `json:"action,omitempty"`
	Reboot *RebootRequest `json:"reboot,omitempty"`
}

// RestartItem is one component of a node restart.
type RestartItem struct {
	Component string        `json:"component"`
	Version   string        `json:"version"`
	Hooks     release.Hooks `json:"hooks"`
}

// Result is what an operation answers.
type Result struct {
	Changed bool   `json:"changed"`
	Note    string `json:"note,omitempty"`
	Facts   *Facts `json:"facts,omitempty"`
	// CheckCache: digests absent, and present but damaged.
	Missing []string `json:"missing,omitempty"`
	Damaged []string `json:"damaged,omitempty"`
	// Probe: what preflight needs to know.
	Probe *ProbeFacts `json:"probe,omitempty"`
	// Clock: the node's time, in nanoseconds since the Unix epoch.
	Clock int64 `json:"clock,omitempty"`
	// Lease: the answer to a lease request.
	Lease *LeaseResult `json:"lease,omitempty"`
	// BootState: a reboot asked for has not happened yet.
	Rebooting bool `json:"rebooting,omitempty"`
}

// Facts is what a node says about itself.
type Facts struct {
	Node        string            `json:"node"`
	Root        string            `json:"root"`
	Record      *Record           `json:"record,omitempty"`
	RecordError string            `json:"record_error,omitempty"`
	Current     map[string]string `json:"current"` // component -> version its current link points at
	Cached      []string          `json:"cached"`  // digests in the node cache
}

// FetchProgress is how a download on a node is going.
type FetchProgress struct {
	Digest  string  `json:"sha256"`
	URL     string  `json:"url"`
	Done    int64   `json:"done"`
	Total   int64   `json:"total"`
	Rate    float64 `json:"rate"` // bytes per second, current attempt
	Retries int     `json:"retries"`
	Final   bool    `json:"final,omitempty"`
	Failed  bool    `json:"failed,omitempty"` // with Final: the download did not complete
}

// FetchSource is one place a fetch may take an artifact from.
type FetchSource struct {
	URL string `json:"url"`
	// Direct: no proxy (the cache daemon, a registry).
	Direct    bool        `json:"direct,omitempty"`
	CachePeer *cache.Peer `json:"cache_peer,omitempty"`
	Registry  *oci.Access `json:"registry,omitempty"`
}
