package cluster

import (
	"strings"
	"testing"
	"time"
)

// An action is a command alone or a mapping; bad entries are refused where
// the cluster file is read, naming the field.
func TestActions(t *testing.T) {
	inv, err := LoadInventory(writeInventory(t, goodInventory+`actions:
  os-security-updates: apt-get update && unattended-upgrades -d
  dist-upgrade:
    command: apt-get -y dist-upgrade
    mirror: http://mirror.example.com/ubuntu/
    timeout: 45m
reboot_command: shutdown -r now
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Actions["os-security-updates"]; got.Command != "apt-get update && unattended-upgrades -d" {
		t.Errorf("the command alone: %+v", got)
	}
	if got := inv.Actions["dist-upgrade"]; got.Command != "apt-get -y dist-upgrade" || got.Mirror != "http://mirror.example.com/ubuntu/" || got.Timeout != 45*time.Minute {
		t.Errorf("the mapping: %+v", got)
	}
	if inv.RebootCommand != "shutdown -r now" {
		t.Errorf("reboot_command %q", inv.RebootCommand)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"actions:\n  Updates: true\n", `"Updates" is not a valid action name`},
		{"actions:\n  up:\n    mirror: http://m/\n", "field actions.up: no command"},
		{"actions:\n  up:\n    command: x\n    mirror: ftp://m/\n", "field actions.up.mirror"},
		{"actions:\n  up:\n    command: x\n    timeout: -1m\n", "field actions.up.timeout"},
		{"actions:\n  up:\n    command: x\n    colour: red\n", "colour"},
	} {
		_, err := LoadInventory(writeInventory(t, goodInventory+bad.yaml))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.yaml, err, bad.want)
		}
	}
}
