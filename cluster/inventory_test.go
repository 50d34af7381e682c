package cluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/preflight"
)

const goodInventory = `name: lab
channel: http://127.0.0.1:1/index.json
nodes:
  - name: core
    address: 127.0.0.1
    roles: [primary, controller, router]
    root: /s
    transport: local
  - name: dea-1
    address: 127.0.0.2
    roles: [dea]
    root: /s
    transport: local
`

func writeInventory(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadInventory(t *testing.T) {
	inv, err := LoadInventory(writeInventory(t, goodInventory))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Core().Name != "core" || inv.State() != "/s/var/sentinel" || len(inv.Nodes) != 2 {
		t.Errorf("inventory = %+v", inv)
	}
	cases := []struct{ name, old, new, want string }{
		{"no core", "[primary, controller, router]", "[controller, router]", "exactly one node must have the primary role"},
		{"two cores", "roles: [dea]", "roles: [primary]", "found 2"},
		{"unknown role", "roles: [dea]", "roles: [wizard]", `node dea-1 has unknown role "wizard"`},
		{"relative root", "root: /s\n    transport: local\n  - name: dea-1", "root: s\n    transport: local\n  - name: dea-1", "absolute root"},
		{"duplicate name", "name: dea-1", "name: core", `node "core" listed twice`},
		{"unknown transport", "transport: local\n  - name: dea-1", "transport: telnet\n  - name: dea-1", `unsupported transport "telnet"`},
		{"unknown field", "name: lab", "name: lab\ncolour: red", "field colour not found"},
		{"no channel", "channel: http://127.0.0.1:1/index.json", "", "field channel: missing"},
		{"trust without root", "name: lab", "name: lab\ntrust: {channel_id: stable}", "field trust.root: missing"},
		{"bad trust channel id", "name: lab", "name: lab\ntrust: {root: r.json, channel_id: ../x}", "field trust.channel_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeInventory(t, strings.Replace(goodInventory, c.old, c.new, 1))
			_, err := LoadInventory(p)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("err = %v, want the path and %q", err, c.want)
			}
		})
	}
	if _, err := LoadInventory("/nonexistent/cluster.yaml"); err == nil || !strings.Contains(err.Error(), "SENTINEL_CLUSTER") {
		t.Errorf("missing file: %v", err)
	}
}

// trust.root is relative to the cluster file's directory.
func TestInventoryTrust(t *testing.T) {
	p := writeInventory(t, goodInventory)
	inv, _ := LoadInventory(p)
	if inv.TrustRoot() != "" || inv.TrustChannelID() != "default" {
		t.Errorf("no trust: root %q, id %q", inv.TrustRoot(), inv.TrustChannelID())
	}
	p = writeInventory(t, goodInventory+"trust:\n  root: keys/root.json\n  channel_id: stable\n")
	inv, err := LoadInventory(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(p), "keys", "root.json"); inv.TrustRoot() != want || inv.TrustChannelID() != "stable" {
		t.Errorf("root %q (want %q), id %q", inv.TrustRoot(), want, inv.TrustChannelID())
	}
}

// The product's figures, unless the cluster file changes some of them.
func TestThresholds(t *testing.T) {
	tests := []struct {
		name, preflight string
		want            preflight.Thresholds
	}{
		{"documented figures", "", preflight.Thresholds{NodeDisk: 7 << 30, CacheDisk: 10 << 30, NodeMemory: 512 << 20, CoreMemory: 1 << 30}},
		{"some changed", "preflight:\n  node_disk_gib: 2.5\n  core_memory_mib: 2048\n",
			preflight.Thresholds{NodeDisk: 5 << 29, CacheDisk: 10 << 30, NodeMemory: 512 << 20, CoreMemory: 2 << 30}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := LoadInventory(writeInventory(t, goodInventory+tt.preflight))
			if err != nil {
				t.Fatal(err)
			}
			if got := inv.Thresholds(); got != tt.want {
				t.Errorf("thresholds %+v, want %+v", got, tt.want)
			}
		})
	}
}

// An ssh node of the cluster file dials as the SSH transport with its
// fields; a malformed one is refused naming the field.
func TestDialSSHAndInventory(t *testing.T) {
	inv, err := LoadInventory(writeInventory(t, `name: lab
channel: http://127.0.0.1:1/index.json
nodes:
  - name: core
    address: 10.0.0.1
    roles: [primary]
    root: /s
    transport: ssh
    user: deploy
    port: 2222
    key_file: /k/id
    known_hosts: /k/known_hosts
    sudo: true
`))
	if err != nil {
		t.Fatal(err)
	}
	n := inv.Nodes[0]
	tr, err := Dial(n, "/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	s, ok := tr.(*SSH)
	if !ok {
		t.Fatalf("Dial = %T, want *SSH", tr)
	}
	if s.addr != "10.0.0.1:2222" || s.user != "deploy" || s.knownHosts != "/k/known_hosts" || s.remoteBinary != DefaultRemoteBinary || !n.Sudo || n.KeyFile != "/k/id" {
		t.Errorf("transport = %+v", s)
	}
	if got := s.command(s.remoteBinary, "node", "facts", "--root", "/s x"); got != "sudo -n -- /usr/local/bin/sentinel node facts --root '/s x'" {
		t.Errorf("command = %q", got)
	}

	for _, bad := range []struct{ fields, want string }{
		{`address: ""`, "field nodes[0].address: node core uses the ssh transport and has no address"},
		{"address: 10.0.0.1\n    remote_binary: bin/sentinel", "field nodes[0].remote_binary"},
		{"address: 10.0.0.1\n    port: 70000", "field nodes[0].port"},
	} {
		_, err := LoadInventory(writeInventory(t, `name: lab
channel: http://127.0.0.1:1/index.json
nodes:
  - name: core
    roles: [primary]
    root: /s
    transport: ssh
`+"    "+bad.fields+"\n"))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error saying %q", bad.fields, err, bad.want)
		}
	}
}

// A cluster file far larger than any cluster is refused before it is
// parsed, so a wrong path cannot fill the memory.
func TestOversizedClusterFileRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	data := append([]byte("name: big\n# "), bytes.Repeat([]byte("x"), MaxInventoryBytes)...)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadInventory(p)
	var ie *InventoryError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "larger than 4 MiB") {
		t.Fatalf("a %d-byte cluster file: %v", len(data), err)
	}
}
