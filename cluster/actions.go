package cluster

import (
	"fmt"
	"net/url"
	"regexp"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Action is an operator-defined command that `sentinel maintain` runs as
// root on each node (the cluster file's actions: block). An entry is the
// command alone, or a mapping with the command, the package mirror it
// talks to (preflight checks that it answers through the proxy) and a
// timeout.
type Action struct {
	Command string        `yaml:"command"`
	Mirror  string        `yaml:"mirror,omitempty"`
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// UnmarshalYAML takes `name: command` as well as the mapping.
func (a *Action) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&a.Command)
	}
	// KnownFields does not reach through a custom unmarshaler: a typo
	// must not leave a mirror unchecked or a timeout unbounded.
	for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i].Value; k {
		case "command", "mirror", "timeout":
		default:
			return fmt.Errorf("line %d: field %s not found in an action (command, mirror, timeout)", n.Content[i].Line, k)
		}
	}
	type plain Action
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*a = Action(p)
	return nil
}

var actionName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`) })

// validateActions checks the actions: block where it enters.
func (inv *Inventory) validateActions() error {
	for name, a := range inv.Actions {
		at := "field actions." + name
		if !actionName().MatchString(name) {
			return fmt.Errorf("field actions: %q is not a valid action name (lower-case letters, digits, '.', '_', '-')", name)
		}
		if a.Command == "" {
			return fmt.Errorf("%s: no command", at)
		}
		if a.Timeout < 0 {
			return fmt.Errorf("%s.timeout: %s is negative", at, a.Timeout)
		}
		if a.Mirror != "" {
			u, err := url.Parse(a.Mirror)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%s.mirror: %q is not an http(s) URL", at, a.Mirror)
			}
		}
	}
	return nil
}
