package ui

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sentinel-paas/sentinel/patches"
	"github.com/sentinel-paas/sentinel/preflight"
)

// printPreflight renders the report as a table; all shows passing checks too.
func PrintPreflight(w io.Writer, rep *preflight.Report, all bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCHECK\tSTATUS\tREASON")
	for _, r := range rep.Results {
		if !all && r.Status == "PASS" {
			continue
		}
		node := r.Node
		if node == "" {
			node = "(cluster)"
		}
		reason := strings.Join(r.Messages, "; ")
		if r.Ignored {
			reason = "ignored: " + reason
		}
		if reason == "" {
			reason = r.Detail
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", node, r.Check, r.Status, reason)
	}
	tw.Flush()
}

// preflightJSON is the stable shape of `sentinel preflight --output json`.
type PreflightJSON struct {
	OK      bool               `json:"ok"`
	Results []preflight.Result `json:"results"`
}

func PrintPreflightJSON(w io.Writer, rep *preflight.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(PreflightJSON{OK: rep.Err() == nil, Results: rep.Results})
}

// printPatchStatus writes the status as the product's `kato patch status` did.
func PrintPatchStatus(w io.Writer, st *patches.Status, all bool) {
	n := st.Available()
	switch n {
	case 0:
		fmt.Fprintf(w, "No updates are available for %s.\n", st.Release)
	case 1:
		fmt.Fprintf(w, "1 update is available for %s.\n", st.Release)
	default:
		fmt.Fprintf(w, "%d updates are available for %s.\n", n, st.Release)
	}
	for _, p := range st.Patches {
		if !all && !p.Pending() && len(p.Problems) == 0 {
			continue
		}
		fmt.Fprintf(w, "    %s: %s\n", p.Name, p.Description)
		fmt.Fprintf(w, "        patch id:           %d\n", p.ID)
		fmt.Fprintf(w, "        severity:           %s\n", p.Severity)
		fmt.Fprintf(w, "        roles affected:     %s\n", strings.Join(p.Roles, ", "))
		fmt.Fprintf(w, "        installed on:       %s\n", installedOn(p))
		fmt.Fprintf(w, "        to be installed on: %s\n", orNoneList(p.ToBeInstalledOn))
		for _, pr := range p.Problems {
			fmt.Fprintf(w, "        WARNING on %s: %s\n", pr.Node, pr.Problem)
		}
	}
	for _, nr := range st.OtherRelease {
		fmt.Fprintf(w, "Node %s is on release %s, not %s: these patches do not apply to it.\n", nr.Node, nr.Release, st.Release)
	}
}

// installedOn names the nodes with the patch, each still waiting for its
// restart marked so.
func installedOn(p patches.PatchStatus) string {
	var out []string
	for _, n := range p.InstalledOn {
		if slices.Contains(p.RestartPendingOn, n) {
			n += " (installed, restart pending: `sentinel restart --node " + n + "`)"
		}
		out = append(out, n)
	}
	return orNoneList(out)
}

func orNoneList(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}
