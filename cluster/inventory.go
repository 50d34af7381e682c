// Package cluster knows the machines of a cluster: the inventory file and
// the transports that reach a node. What a node records about itself
// (node.json) is the agent's business: steps.Record.
package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sentinel-paas/sentinel/cache"
	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
)

// Inventory is the cluster file: which nodes exist, their roles and how to
// reach them.
type Inventory struct {
	Name    string `yaml:"name"`
	Channel string `yaml:"channel"`
	// Mirrors are channel URLs read before the channel, in order: the next
	// is tried when one does not answer (docs/operator.md: Registries and
	// mirrors). http(s)://, file:// or oci://HOST[:PORT]/REPO.
	Mirrors []string `yaml:"mirrors,omitempty"`
	// RegistryAuth: a Docker config.json with the registries' credentials.
	RegistryAuth string `yaml:"registry_auth,omitempty"`
	// RegistryCA: the PEM CA the registries' certificates are checked
	// against ("": the system's roots).
	RegistryCA string `yaml:"registry_ca,omitempty"`
	// StateDir holds run journals and the run lock; default <core root>/var/sentinel.
	StateDir string `yaml:"state_dir,omitempty"`
	Nodes    []Node `yaml:"nodes"`
	// Cache describes the cache node, if the cluster has one.
	Cache *CacheNode `yaml:"cache,omitempty"`
	// MaintenanceHook is a shell command that exits 0 when the cluster is
	// in maintenance mode and 1 when it is not.
	MaintenanceHook string `yaml:"maintenance_hook,omitempty"`
	// Preflight overrides the product's thresholds.
	Preflight *PreflightThresholds `yaml:"preflight,omitempty"`
	// Trust, when set, makes every channel document verify (see trust/).
	Trust *TrustConfig `yaml:"trust,omitempty"`
	// Notify is run on this machine at the end of every run.
	Notify *NotifyConfig `yaml:"notify,omitempty"`
	// Update says how runs go through the nodes; flags override it.
	Update *UpdateConfig `yaml:"update,omitempty"`
	// Maintenance switches the cluster's maintenance mode: a run turns it
	// on before its first change and off after its last.
	Maintenance *MaintenanceConfig `yaml:"maintenance,omitempty"`
	// Actions are the commands `sentinel maintain ACTION` runs on the
	// nodes (actions.go); RebootCommand reboots a node after one (default
	// steps.DefaultRebootCommand).
	Actions       map[string]Action `yaml:"actions,omitempty"`
	RebootCommand string            `yaml:"reboot_command,omitempty"`

	path string
}

// NotifyConfig is a command run at the end of every run (to tell a chat or
// a ticket), given the result in SENTINEL_* environment variables.
type NotifyConfig struct {
	// Command is the program and its arguments, run without a shell.
	Command []string `yaml:"command"`
	// Timeout bounds it; default DefaultNotifyTimeout.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// DefaultNotifyTimeout bounds a notify command unless the cluster file says.
const DefaultNotifyTimeout = 30 * time.Second

// MaintenanceConfig is the maintenance: block: shell commands run by
// /bin/sh on the machine sentinel runs on (the core node, where kato
// reaches the whole cluster), in order, each to exit 0. Status says whether
// the mode is on: every command exits 0 when it is, one exits 1 when not.
type MaintenanceConfig struct {
	On     []string `yaml:"on"`
	Off    []string `yaml:"off"`
	Status []string `yaml:"status,omitempty"`
}

// UpdateConfig is the update: block, as written (numbers or percentages,
// durations): a run checks it before it changes anything.
type UpdateConfig struct {
	Canaries    string `yaml:"canaries,omitempty"`
	WatchTime   string `yaml:"watch_time,omitempty"`
	MaxInFlight string `yaml:"max_in_flight,omitempty"`
	MaxFailures string `yaml:"max_failures,omitempty"`
	// ClosingRestart: true restarts, after the core, every node upgraded
	// before it (the docs' "kato restart on all nodes").
	ClosingRestart string `yaml:"closing_restart,omitempty"`
}

// TrustConfig says how channel metadata is verified.
type TrustConfig struct {
	// Root is the trust anchor: the channel's root.json as obtained from
	// its publisher out of band. Relative to the cluster file's directory.
	Root string `yaml:"root"`
	// ChannelID names this channel's trusted state under the state
	// directory (<state_dir>/trust/<id>); default "default". Give each
	// channel its own when switching between channels.
	ChannelID string `yaml:"channel_id,omitempty"`
}

// TrustRoot is the absolute path of the trust anchor, "" when the cluster
// file sets none (channel metadata is then not verified).
func (inv *Inventory) TrustRoot() string {
	if inv.Trust == nil || inv.Trust.Root == "" {
		return ""
	}
	if filepath.IsAbs(inv.Trust.Root) {
		return inv.Trust.Root
	}
	return filepath.Join(filepath.Dir(inv.path), inv.Trust.Root)
}

// RegistrySettings are the registries' CA and credentials, their paths
// made absolute against the cluster file's directory.
func (inv *Inventory) RegistrySettings() oci.Settings {
	return oci.Settings{CAFile: inv.relPath(inv.RegistryCA), AuthFile: inv.relPath(inv.RegistryAuth)}
}

func (inv *Inventory) relPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(inv.path), p)
}

// TrustChannelID names the channel's trusted state.
func (inv *Inventory) TrustChannelID() string {
	if inv.Trust == nil || inv.Trust.ChannelID == "" {
		return "default"
	}
	return inv.Trust.ChannelID
}

// Node is one machine of the cluster.
type Node struct {
	Name      string   `yaml:"name"`
	Address   string   `yaml:"address"`
	Roles     []string `yaml:"roles"`
	Root      string   `yaml:"root"`
	Transport string   `yaml:"transport"`
	// Prefix is prepended to the node agent's command line (local transport),
	// e.g. to run it inside a cgroup or namespace.
	Prefix []string `yaml:"prefix,omitempty"`
	// SSH transport (see ssh.go for the defaults): the login user (default
	// the local user), port (22), private key file (else the SSH agent,
	// else ~/.ssh/id_ed25519 or id_rsa), known_hosts file
	// (~/.ssh/known_hosts), whether to run the agent with `sudo -n`, and
	// where the agent binary lives on the node (/usr/local/bin/sentinel).
	User         string `yaml:"user,omitempty"`
	Port         int    `yaml:"port,omitempty"`
	KeyFile      string `yaml:"key_file,omitempty"`
	KnownHosts   string `yaml:"known_hosts,omitempty"`
	Sudo         bool   `yaml:"sudo,omitempty"`
	RemoteBinary string `yaml:"remote_binary,omitempty"`
	// MemoryCgroup is the cgroup the node's roles run in, as a path in the
	// node's cgroup tree (e.g. /system.slice): preflight measures the
	// memory there. Unset: the node as a whole, never the cgroup of the
	// session the agent runs in.
	MemoryCgroup string `yaml:"memory_cgroup,omitempty"`
}

// CacheNode is the node that runs the cache daemon (`sentinel cache serve`)
// and where it keeps artifacts: `--cache-ip` names it on the command line.
type CacheNode struct {
	Node string `yaml:"node"`
	// Dir is the daemon's cache_dir (the product's setting of that name).
	Dir string `yaml:"dir"`
	// ChannelDir is where the daemon keeps the channel documents; default
	// <dir>/channel, as `sentinel cache serve` does.
	ChannelDir string `yaml:"channel_dir,omitempty"`
	// Port the daemon listens on; default DefaultCachePort.
	Port int `yaml:"port,omitempty"`
	// TokenFile holds the bearer token of the daemon's prefetch API
	// ($SENTINEL_CACHE_TOKEN overrides it).
	TokenFile string `yaml:"token_file,omitempty"`
	// How the orchestrator and the nodes verify the daemon (exactly one):
	// the sha256 fingerprint of its certificate, printed when the
	// certificate was made; a CA file (PEM, relative to the cluster file)
	// that signed a certificate for the daemon's IP address; or plain_http:
	// true, no TLS at all (the token and artifacts in clear).
	TLSFingerprint string `yaml:"tls_fingerprint,omitempty"`
	CAFile         string `yaml:"ca_file,omitempty"`
	PlainHTTP      bool   `yaml:"plain_http,omitempty"`
}

// PreflightThresholds override the free disk and memory each node needs.
type PreflightThresholds struct {
	NodeDiskGiB   float64 `yaml:"node_disk_gib,omitempty"`   // default 7
	CacheDiskGiB  float64 `yaml:"cache_disk_gib,omitempty"`  // default 10
	NodeMemoryMiB float64 `yaml:"node_memory_mib,omitempty"` // default 512
	CoreMemoryMiB float64 `yaml:"core_memory_mib,omitempty"` // default 1024 (core and cache nodes)
}

// Thresholds are the free disk and memory preflight asks of each node: the
// product's figures (preflight.DefaultThresholds) unless the cluster file
// says otherwise.
func (inv *Inventory) Thresholds() preflight.Thresholds {
	t := preflight.DefaultThresholds()
	if p := inv.Preflight; p != nil {
		set := func(dst *uint64, v float64, unit uint64) {
			if v > 0 {
				*dst = uint64(v * float64(unit))
			}
		}
		set(&t.NodeDisk, p.NodeDiskGiB, preflight.GiB)
		set(&t.CacheDisk, p.CacheDiskGiB, preflight.GiB)
		set(&t.NodeMemory, p.NodeMemoryMiB, preflight.MiB)
		set(&t.CoreMemory, p.CoreMemoryMiB, preflight.MiB)
	}
	return t
}

// DefaultCachePort is where `sentinel cache serve` listens unless told.
const DefaultCachePort = 9077

// TransportLocal runs the node agent as a subprocess on this machine.
const TransportLocal = "local"

// TransportSSH runs the node agent on the node's address over SSH.
const TransportSSH = "ssh"

// Compiled on first use: a `sentinel node` call that never validates
// one does not pay for it (a bounded repetition compiles to a large program).
var nodeName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) })

// MaxInventoryBytes bounds a cluster file: the docs' largest cluster takes
// a few KiB, and a file far larger is a mistake, not a cluster.
const MaxInventoryBytes = 4 << 20

// readBounded reads a file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("larger than %d MiB: that is no cluster file (check --cluster)", max>>20)
	}
	return data, err
}

// LoadInventory reads and validates a cluster file.
func LoadInventory(path string) (*Inventory, error) {
	data, err := readBounded(path, MaxInventoryBytes)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &InventoryError{Path: path, Err: fmt.Errorf("file does not exist (pass --cluster FILE or set SENTINEL_CLUSTER; `sentinel-lab up` writes one)")}
		}
		return nil, &InventoryError{Path: path, Err: err}
	}
	var inv Inventory
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&inv); err != nil {
		return nil, &InventoryError{Path: path, Err: fmt.Errorf("malformed YAML: %w", err)}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &InventoryError{Path: path, Err: err}
	}
	inv.path = abs
	if err := inv.validate(); err != nil {
		return nil, &InventoryError{Path: path, Err: err}
	}
	return &inv, nil
}

// Path is the absolute path the inventory was read from.
func (inv *Inventory) Path() string { return inv.path }

func (inv *Inventory) validate() error {
	if err := inv.validateActions(); err != nil {
		return err
	}
	if m := inv.Maintenance; m != nil && (len(m.On) == 0 || len(m.Off) == 0 || len(m.Status) == 0) {
		return fmt.Errorf("field maintenance: needs on, off and status commands (lists of shell commands), or no maintenance block at all")
	}
	if inv.Channel == "" {
		return fmt.Errorf("field channel: missing (the URL of the release channel index)")
	}
	if err := CheckChannelURLs(inv.Channel, inv.Mirrors); err != nil {
		return err
	}
	if len(inv.Nodes) == 0 {
		return fmt.Errorf("field nodes: no nodes")
	}
	seen := map[string]bool{}
	cores := 0
	for i, n := range inv.Nodes {
		at := fmt.Sprintf("nodes[%d]", i)
		if !nodeName().MatchString(n.Name) {
			return fmt.Errorf("field %s.name: %q is not a valid node name", at, n.Name)
		}
		if seen[n.Name] {
			return fmt.Errorf("field %s.name: node %q listed twice", at, n.Name)
		}
		seen[n.Name] = true
		if len(n.Roles) == 0 {
			return fmt.Errorf("field %s.roles: node %s has no roles", at, n.Name)
		}
		for _, r := range n.Roles {
			if !release.KnownRole(r) {
				return fmt.Errorf("field %s.roles: node %s has unknown role %q", at, n.Name, r)
			}
			if r == release.RolePrimary {
				cores++
			}
		}
		if !filepath.IsAbs(n.Root) {
			return fmt.Errorf("field %s.root: node %s needs an absolute root directory, got %q", at, n.Name, n.Root)
		}
		if c := n.MemoryCgroup; c != "" && (!strings.HasPrefix(c, "/") || path.Clean(c) != c || strings.ContainsAny(c, "\x00\n")) {
			return fmt.Errorf("field %s.memory_cgroup: node %s: %q is not a cgroup path such as /system.slice (absolute, no . or .. elements)", at, n.Name, c)
		}
		switch n.Transport {
		case TransportLocal:
		case TransportSSH:
			if err := n.validateSSH(); err != nil {
				return fmt.Errorf("field %s.%v", at, err)
			}
		case "":
			return fmt.Errorf("field %s.transport: node %s has no transport (supported: local, ssh)", at, n.Name)
		default:
			return fmt.Errorf("field %s.transport: node %s: unsupported transport %q (supported: local, ssh)", at, n.Name, n.Transport)
		}
	}
	if cores != 1 {
		return fmt.Errorf("field nodes: exactly one node must have the primary role (the core node), found %d", cores)
	}
	if c := inv.Cache; c != nil {
		if !seen[c.Node] {
			return fmt.Errorf("field cache.node: %q is not a node of this cluster", c.Node)
		}
		if !filepath.IsAbs(c.Dir) {
			return fmt.Errorf("field cache.dir: the cache_dir must be an absolute path, got %q", c.Dir)
		}
		if c.Port < 0 || c.Port > 65535 {
			return fmt.Errorf("field cache.port: %d is not a port", c.Port)
		}
		if err := c.validateTLS(); err != nil {
			return err
		}
	}
	if n := inv.Notify; n != nil {
		if len(n.Command) == 0 || n.Command[0] == "" {
			return fmt.Errorf("field notify.command: missing (the program to run at the end of every run, and its arguments)")
		}
		if n.Timeout < 0 || n.Timeout > time.Hour {
			return fmt.Errorf("field notify.timeout: %s is not between 0 and 1h", n.Timeout)
		}
	}
	if t := inv.Trust; t != nil {
		if t.Root == "" {
			return fmt.Errorf("field trust.root: missing (the channel's root, obtained from its publisher out of band: every channel is verified)")
		}
		if t.ChannelID != "" && !channelID().MatchString(t.ChannelID) {
			return fmt.Errorf("field trust.channel_id: %q: want letters, digits, '.', '_' or '-'", t.ChannelID)
		}
	}
	return nil
}

func (c *CacheNode) validateTLS() error {
	set := 0
	for _, on := range []bool{c.TLSFingerprint != "", c.CAFile != "", c.PlainHTTP} {
		if on {
			set++
		}
	}
	if set > 1 {
		return fmt.Errorf("field cache: tls_fingerprint, ca_file and plain_http are alternatives: keep one")
	}
	if c.TLSFingerprint != "" {
		if _, err := cache.ParseFingerprint(c.TLSFingerprint); err != nil {
			return fmt.Errorf("field cache.tls_fingerprint: %w", err)
		}
	}
	return nil
}

// CachePeer says how to verify the cache daemon, reading the CA file if
// the cluster file names one. A cluster file that says nothing about it
// is refused: the daemon is reached over TLS unless plain_http asks
// otherwise, and a certificate that nothing vouches for is not accepted.
func (inv *Inventory) CachePeer() (cache.Peer, error) {
	c := inv.Cache
	switch {
	case c != nil && c.TLSFingerprint != "":
		fp, err := cache.ParseFingerprint(c.TLSFingerprint)
		return cache.Peer{Fingerprint: fp}, err
	case c != nil && c.CAFile != "":
		p := c.CAFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(inv.path), p)
		}
		pem, err := readBounded(p, 1<<20)
		if err != nil {
			return cache.Peer{}, &InventoryError{Path: inv.path, Err: fmt.Errorf("field cache.ca_file: %w", err)}
		}
		peer := cache.Peer{CAPEM: pem, CAFile: p}
		if _, err := cache.ClientTLS(peer); err != nil {
			return cache.Peer{}, &InventoryError{Path: inv.path, Err: fmt.Errorf("field cache.ca_file: %w", err)}
		}
		return peer, nil
	case c != nil && c.PlainHTTP:
		return cache.Peer{}, nil
	}
	return cache.Peer{}, &InventoryError{Path: inv.path, Err: fmt.Errorf("field cache: nothing says how to verify the cache daemon: set cache.tls_fingerprint to the fingerprint that the package's postinst or `sentinel cache cert` printed on the cache node, or cache.ca_file to the CA that signed its certificate (or, to accept plain HTTP with the token in clear, cache.plain_http: true)")}
}

var channelID = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`) })

// ChannelDirectory is where the cache daemon keeps the channel documents.
func (c *CacheNode) ChannelDirectory() string {
	if c.ChannelDir != "" {
		return c.ChannelDir
	}
	return filepath.Join(c.Dir, "channel")
}

// CachePort is the cache daemon's port from the cluster file, or the default.
func (inv *Inventory) CachePort() int {
	if inv.Cache != nil && inv.Cache.Port != 0 {
		return inv.Cache.Port
	}
	return DefaultCachePort
}

// CacheAddress is the cache daemon's IP:PORT as the cluster file's cache
// section names it, "" when it has none: the default of --cache-ip.
func (inv *Inventory) CacheAddress() string {
	if inv.Cache == nil {
		return ""
	}
	n, ok := inv.Node(inv.Cache.Node)
	if !ok || n.Address == "" {
		return ""
	}
	return net.JoinHostPort(n.Address, strconv.Itoa(inv.CachePort()))
}

// Core returns the core node: the one with the primary role.
func (inv *Inventory) Core() Node {
	for _, n := range inv.Nodes {
		if n.HasRole(release.RolePrimary) {
			return n
		}
	}
	panic("validated inventory without core node")
}

// Node returns the named node.
func (inv *Inventory) Node(name string) (Node, bool) {
	for _, n := range inv.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// NodesWithRole names the nodes that have role r, in file order.
func (inv *Inventory) NodesWithRole(r string) []string {
	out := []string{}
	for _, n := range inv.Nodes {
		if n.HasRole(r) {
			out = append(out, n.Name)
		}
	}
	return out
}

// State is the directory of run journals and the run lock.
func (inv *Inventory) State() string {
	if inv.StateDir != "" {
		return inv.StateDir
	}
	return filepath.Join(inv.Core().Root, "var", "sentinel")
}

// HasRole reports whether the node has role r.
func (n Node) HasRole(r string) bool {
	for _, x := range n.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// InventoryError says what is wrong with the cluster file.
type InventoryError struct {
	Path string
	Err  error
}

func (e *InventoryError) Error() string { return fmt.Sprintf("cluster file %s: %v", e.Path, e.Err) }
func (e *InventoryError) Unwrap() error { return e.Err }

// CheckChannelURLs checks the registry URLs among the channel and its
// mirrors, and that every mirror is a URL sentinel reads (bad input,
// refused before any run).
func CheckChannelURLs(channel string, mirrors []string) error {
	if oci.IsRef(channel) {
		if _, err := oci.ParseRef(channel); err != nil {
			return fmt.Errorf("field channel: %w", err)
		}
	}
	for i, m := range mirrors {
		if oci.IsRef(m) {
			if _, err := oci.ParseRef(m); err != nil {
				return fmt.Errorf("field mirrors[%d]: %w", i, err)
			}
			continue
		}
		if !strings.HasPrefix(m, "http://") && !strings.HasPrefix(m, "https://") && !strings.HasPrefix(m, "file://") {
			return fmt.Errorf("field mirrors[%d]: %q: want oci://HOST[:PORT]/REPO, or the http(s):// or file:// URL of a copy of the channel's repository", i, m)
		}
	}
	return nil
}
