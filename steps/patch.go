package steps

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// recordPatch makes node.json say whether a patch is installed, and which
// component versions are in place, in one atomic write. It is the last
// step of a patch on a node (after the files are switched in) and of its
// revert: with the journal it keeps the record and the files in agreement
// across a crash. Running it again changes nothing.
func (a *Agent) recordPatch(_ context.Context, req Request) (Result, error) {
	if req.Patch == "" {
		return Result{}, fmt.Errorf("record-patch: no patch named in the request")
	}
	rec, err := ReadRecord(a.Layout.Root)
	if err != nil {
		return Result{}, err
	}
	if req.Release != "" && rec.Release != req.Release {
		return Result{}, fmt.Errorf("patch %s is for release %s, but node.json records release %s: the node was upgraded meanwhile; run `sentinel patch status`", req.Patch, req.Release, rec.Release)
	}
	has := slices.Contains(rec.Patches, req.Patch)
	pendingKept := !slices.ContainsFunc(req.RestartPending, func(c string) bool { return !slices.Contains(rec.RestartPending, c) })
	if has == req.PatchInstalled && sameVersions(rec.Components, req.Components) && pendingKept {
		return Result{Note: fmt.Sprintf("node.json already records patch %s as %s", req.Patch, installedWord(req.PatchInstalled))}, nil
	}
	next := &Record{Release: rec.Release, Components: map[string]string{}, Updated: time.Now().UTC(), RestartPending: slices.Clone(rec.RestartPending)}
	for _, c := range req.RestartPending {
		if !slices.Contains(next.RestartPending, c) {
			next.RestartPending = append(next.RestartPending, c)
		}
	}
	for c, v := range rec.Components {
		next.Components[c] = v
	}
	var changed []string
	for c, v := range req.Components {
		if next.Components[c] != v {
			changed = append(changed, c+" "+v)
		}
		next.Components[c] = v
	}
	for _, p := range rec.Patches {
		if p != req.Patch {
			next.Patches = append(next.Patches, p)
		}
	}
	if req.PatchInstalled {
		next.Patches = append(next.Patches, req.Patch)
	}
	if err := WriteRecord(a.Layout.Root, next); err != nil {
		return Result{}, err
	}
	note := fmt.Sprintf("node.json records patch %s as %s", req.Patch, installedWord(req.PatchInstalled))
	if len(changed) > 0 {
		slices.Sort(changed)
		note += " (" + strings.Join(changed, ", ") + ")"
	}
	return Result{Changed: true, Note: note}, nil
}

func installedWord(installed bool) string {
	if installed {
		return "installed"
	}
	return "not installed"
}

// clearRestartPending takes a component that now runs its current files
// off node.json's list of components waiting for a restart.
func clearRestartPending(root, component string) error {
	rec, err := ReadRecord(root)
	if err != nil || !slices.Contains(rec.RestartPending, component) {
		return nil // no record (a first install), or nothing pending
	}
	next := *rec
	next.RestartPending = slices.DeleteFunc(slices.Clone(rec.RestartPending), func(c string) bool { return c == component })
	next.Updated = time.Now().UTC()
	if err := WriteRecord(root, &next); err != nil {
		return fmt.Errorf("%s started, but node.json could not be updated: %w", component, err)
	}
	return nil
}
