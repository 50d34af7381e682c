// Package steps holds what one step does on one node: the node agent's
// operations (run by `sentinel node <op>`) and the requests that ask for them.
package steps

import "path/filepath"

// Layout names the places of a node's file system, relative to its root
// (/s in production).
type Layout struct{ Root string }

func (l Layout) ComponentDir(c string) string { return filepath.Join(l.Root, "code", c) }
func (l Layout) ReleasesDir(c string) string  { return filepath.Join(l.ComponentDir(c), "releases") }
func (l Layout) ReleaseDir(c, v string) string {
	return filepath.Join(l.ReleasesDir(c), v)
}
func (l Layout) Current(c string) string { return filepath.Join(l.ComponentDir(c), "current") }
func (l Layout) CacheDir() string        { return filepath.Join(l.Root, "cache") }
func (l Layout) EtcDir() string          { return filepath.Join(l.Root, "etc") }
func (l Layout) BackupDir(id string) string {
	return filepath.Join(l.Root, "var", "sentinel", "backups", id)
}
func (l Layout) AgentLock() string { return filepath.Join(l.Root, "var", "sentinel", "agent.lock") }

// HookMarker names the hook run in progress, so the next agent can stop
// what a killed one left running.
func (l Layout) HookMarker() string { return filepath.Join(l.Root, "var", "sentinel", "hook-running") }
func (l Layout) TmpDir() string     { return filepath.Join(l.Root, "var", "sentinel", "tmp") }

// Migrated marks a component release whose migrate hook completed: a
// migration is the one hook that must not run twice.
func (l Layout) Migrated(c, v string) string {
	return filepath.Join(l.Root, "var", "sentinel", "migrated", c+"@"+v)
}
func (l Layout) LogDir() string { return filepath.Join(l.Root, "logs") }

// installedMarker sits in every release directory sentinel unpacked and holds
// the artifact digest it came from.
const installedMarker = ".sentinel-artifact"
