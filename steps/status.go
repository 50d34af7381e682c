package steps

import (
	"bufio"
	"context"
	"os"
	"strings"
	"time"
)

// A component may ship hooks/status, which prints what runs, as lines of
// key=value:
//
//	state=running|stopped
//	version=VERSION      the release that runs (with state=running)
//	schema=VERSION       the release its data was migrated to, if any
//
// With it, stop, start and migrate look before they act: a step whose
// effect is already in place (a crash came after the hook, before the
// journal heard of it) does not run its hook again. Without it, or when
// its answer is unclear, the step runs its hook, which must then be
// idempotent, as the hook contract asks.
//
// The hook is asked only when the step is a retry (Request.Retry): on a
// first run, and inside a restart, the step's hook always runs, so that a
// supervisor that restarted the component, or a stop hook that returns
// before the process is gone, never makes sentinel skip a hook.

const statusHookTimeout = 30 * time.Second

// componentStatus is what a status hook reported.
type componentStatus struct {
	State   string // "running" or "stopped"
	Version string
	Schema  string
}

// statusOnRetry is status, asked only when the step is a retry.
func (a *Agent) statusOnRetry(ctx context.Context, req Request, version string) (componentStatus, bool) {
	if !req.Retry {
		return componentStatus{}, false
	}
	return a.status(ctx, req.Component, version)
}

// status runs the status hook of the component's release version; ok is
// false when the release has none or it did not answer clearly.
func (a *Agent) status(ctx context.Context, component, version string) (st componentStatus, ok bool) {
	if version == "" {
		return st, false
	}
	out, err := os.CreateTemp(a.Layout.TmpDir(), "status-*")
	if err != nil {
		return st, false
	}
	defer os.Remove(out.Name())
	defer out.Close()
	env := hookEnv{Root: a.Layout.Root, Node: a.Node, Component: component, Version: version}
	ran, err := a.runHookTo(ctx, a.Layout.ReleaseDir(component, version), "status", env, statusHookTimeout, out, false)
	if !ran || err != nil {
		if err != nil {
			a.logf("%s %s: status hook failed (%v): running the step's hook regardless", component, version, err)
		}
		return st, false
	}
	if _, err := out.Seek(0, 0); err != nil {
		return st, false
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		k, v, found := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !found {
			continue
		}
		switch k {
		case "state":
			st.State = v
		case "version":
			st.Version = v
		case "schema":
			st.Schema = v
		}
	}
	switch {
	case st.State == "stopped":
		return st, true
	case st.State == "running" && st.Version != "":
		return st, true
	}
	a.logf("%s %s: status hook gave no clear state=running (with version=) or state=stopped: running the step's hook regardless", component, version)
	return componentStatus{Schema: st.Schema}, false
}
