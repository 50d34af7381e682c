package lifecycle

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/sentinel-paas/sentinel/cluster"
)

// resumeSources gives a resumed run the mirrors, and the registry CA and
// credentials, its first process was started with (--mirror,
// --registry-ca, --registry-auth, in the journaled command), unless this
// command gives them again: the run goes on from the sources it was
// planned with, not the cluster file's. It says so, once.
func (r *Run) resumeSources() error {
	last := r.Last
	if !r.Resume || last == nil || last.Finished() {
		return nil
	}
	var said []string
	if mirrors := flagValues(last.Command, "mirror"); len(mirrors) > 0 && len(flagValues(r.Command, "mirror")) == 0 {
		if err := cluster.CheckChannelURLs(r.Inventory.Channel, mirrors); err != nil {
			return usagef("run %s was started with --mirror that cannot be used now (%v): give --mirror again", last.ID, err)
		}
		r.Source.Mirrors, r.Source.MirrorsFrom = mirrors, "--mirror of the run's first command"
		said = append(said, "--mirror "+strings.Join(mirrors, " --mirror "))
	}
	for _, f := range []struct {
		name string
		set  *string
	}{{"registry-ca", &r.Source.Registry.CAFile}, {"registry-auth", &r.Source.Registry.AuthFile}} {
		v := flagValues(last.Command, f.name)
		if len(v) == 0 || len(flagValues(r.Command, f.name)) > 0 {
			continue
		}
		p := absPath(v[len(v)-1]) // a run journaled before its paths were made absolute
		*f.set = p
		said = append(said, "--"+f.name+" "+p)
	}
	if len(said) > 0 {
		r.Printer.Notef("sentinel: run %s was started with %s: the resume reads the same (give them again to read others)", last.ID, strings.Join(said, " "))
	}
	return nil
}

// sourceFlags are the run's sources given on the command line (or on the
// first command, for a resume): --mirror, --registry-ca, --registry-auth,
// as a command it prints spells them.
func (r *Run) sourceFlags() []string {
	var out []string
	if r.Source.MirrorsFrom != "" {
		for _, m := range r.Source.Mirrors {
			out = append(out, "--mirror", m)
		}
	}
	for _, f := range []struct{ name, value string }{{"registry-ca", r.Source.Registry.CAFile}, {"registry-auth", r.Source.Registry.AuthFile}} {
		given := len(flagValues(r.Command, f.name)) > 0 || r.Resume && r.Last != nil && len(flagValues(r.Last.Command, f.name)) > 0
		if f.value != "" && given {
			out = append(out, "--"+f.name, f.value)
		}
	}
	return out
}

// pathFlags are the run's flags that name a file a resume reads again
// from the journaled command.
var pathFlags = []string{"registry-ca", "registry-auth"}

// absolutePathFlags is argv with the values of pathFlags made absolute
// against the working directory.
func absolutePathFlags(argv []string) []string {
	out := slices.Clone(argv)
	for i := 1; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		for _, name := range pathFlags {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				out[i] = "--" + name + "=" + absPath(v)
			} else if a == "--"+name && i+1 < len(out) {
				out[i+1] = absPath(out[i+1])
			}
		}
	}
	return out
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil && p != "" {
		return a
	}
	return p
}

// flagValues are the values of --name in argv, as `--name V` or
// `--name=V`, in order.
func flagValues(argv []string, name string) []string {
	var out []string
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			out = append(out, v)
		} else if a == "--"+name && i+1 < len(argv) {
			out = append(out, argv[i+1])
			i++
		}
	}
	return out
}
