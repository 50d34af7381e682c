// Package cluster knows the machines of a cluster: the inventory file and
// the transports that reach a node. What a node records about itself
// (node.json) is the agent's business: steps.Record.
package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"go.yaml.in/yaml/v3"

	"github.com/sentinel-paas/sentinel/preflight"
	"github.com/sentinel-paas/sentinel/release"
)

// Inventory is the cluster file: which nodes exist, their roles and how to
// reach them.
type Inventory struct {
	Name    string `yaml:"name"`
	Channel string `yaml:"channel"`
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

	path string
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

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

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
	if inv.Channel == "" {
		return fmt.Errorf("field channel: missing (the URL of the release channel index)")
	}
	if len(inv.Nodes) == 0 {
		return fmt.Errorf("field nodes: no nodes")
	}
	seen := map[string]bool{}
	cores := 0
	for i, n := range inv.Nodes {
		at := fmt.Sprintf("nodes[%d]", i)
		if !nodeName.MatchString(n.Name) {
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
	}
	if t := inv.Trust; t != nil {
		if t.Root == "" {
			return fmt.Errorf("field trust.root: missing (the channel's root, obtained from its publisher out of band: every channel is verified)")
		}
		if t.ChannelID != "" && !channelID.MatchString(t.ChannelID) {
			return fmt.Errorf("field trust.channel_id: %q: want letters, digits, '.', '_' or '-'", t.ChannelID)
		}
	}
	return nil
}

var channelID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

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
