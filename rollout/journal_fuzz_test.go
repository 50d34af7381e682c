package rollout

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/steps"
)

// fuzzPlan builds a plan as the planner would from run options: the
// versions, the nodes and roles (--node, --role-order), --max-in-flight,
// --drain-timeout, --force, --cache-ip, --skip-download, a patch run.
func fuzzPlan(from, to, node, roles, component, kind, patches, cacheURL string, drain int64, maxInFlight int, force, offline bool) *Plan {
	np := NodePlan{Node: node, Roles: strings.Split(roles, ","), From: from, Steps: []Step{
		{ID: "fetch/" + component, Op: steps.OpFetch, Component: component, Version: to,
			Request: steps.Request{Component: component, Version: to, Offline: offline,
				Artifact: release.Artifact{URL: cacheURL + "/" + component, SHA256: strings.Repeat("a", 64), Size: int64(len(component))}}},
		{ID: "retire", Op: steps.OpRetire, Request: steps.Request{DrainDeadline: release.Duration(time.Duration(drain))}},
		{ID: to + "/" + component + "/install", Op: steps.OpInstall, Component: component, Version: to, From: from,
			Request: steps.Request{Component: component, Version: to, FromVersion: from, Components: map[string]string{component: to}}},
	}}
	p := &Plan{From: from, To: to, Source: "upstream", CacheURL: cacheURL, Offline: offline, Hops: []string{to},
		Force: force, Nodes: []NodePlan{np}, MaxInFlight: maxInFlight, Kind: kind}
	if patches != "" {
		p.Patches = strings.Split(patches, ",")
	}
	return p
}

// What a run writes into its journal reads back as it was written, or the
// run never starts (a UsageError) and leaves no journal: a value that
// would not read back can never block later commands.
func FuzzPlanJournalRoundTrip(f *testing.F) {
	f.Add("3.4.1", "3.4.2", "dea-1", "dea", "logyard", "", "", "http://10.0.0.1:9077", int64(10*time.Minute), 0, false, false, "sentinel upgrade 3.4.2 --yes")
	f.Add("3.4.1", "3.4.2", "core", "primary,router", "nats", "patch-install", "aok-fix,x", "", int64(-5*time.Minute), 4, true, true, "sentinel upgrade --drain-timeout -5m")
	f.Add("", "", "", "", "", "", "", "", int64(0), -1, false, false, "")
	f.Add("3.4.1", "3.4.2", "n", "r", "c", "", "", "", int64(1<<62), 1<<30, false, false, "x\x00y")
	f.Fuzz(func(t *testing.T, from, to, node, roles, component, kind, patches, cacheURL string, drain int64, maxInFlight int, force, offline bool, command string) {
		for _, s := range []string{from, to, node, roles, component, kind, patches, cacheURL, command} {
			if !utf8.ValidString(s) {
				t.Skip("JSON carries text; the cluster file and the command line are read as UTF-8")
			}
		}
		plan := fuzzPlan(from, to, node, roles, component, kind, patches, cacheURL, drain, maxInFlight, force, offline)
		argv := strings.Fields(command)
		runs := Runs{Dir: t.TempDir()}
		j, run, err := runs.Start("r1", argv, "test", plan)
		var ue *UsageError
		if errors.As(err, &ue) {
			if last, _, lerr := runs.Latest(); last != nil || lerr != nil {
				t.Fatalf("a refused plan left a run: %+v %v", last, lerr)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		j.Close()
		last, _, err := runs.Latest()
		if err != nil {
			t.Fatalf("a run that started does not read back: %v", err)
		}
		if last.ID != run.ID || !reflect.DeepEqual(last.Plan, plan) || len(argv) > 0 && !reflect.DeepEqual(last.Command, argv) {
			t.Fatalf("read back differs:\n got %+v %q\nwant %+v %q", last.Plan, last.Command, plan, argv)
		}
	})
}
