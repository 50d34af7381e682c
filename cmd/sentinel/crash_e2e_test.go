package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/steps"
)

// Crash anywhere: for every record k of a full run, an upgrade killed with
// SIGKILL right after writing record k is finished by --resume, and the node
// ends exactly as after an uninterrupted run.
//
// The sweep of about two hundred records is split in two, each record taken
// once: this test takes the sampled ones (every tenth, from the first, and
// the last; -short takes the same), TestCrashAnywhereResumesEveryRecord
// all the others. `make test` runs this one, `make test-e2e` the other, and
// CI runs both: together they are the whole sweep, as before the split.
func TestCrashAnywhereResumes(t *testing.T) {
	t.Parallel()
	crashAnywhere(t, func(k, total int) bool { return crashSampled(k, total) })
}

// The rest of the crash-anywhere sweep: every record that
// TestCrashAnywhereResumes does not take.
func TestCrashAnywhereResumesEveryRecord(t *testing.T) {
	longScenario(t)
	t.Parallel()
	crashAnywhere(t, func(k, total int) bool { return !crashSampled(k, total) })
}

// crashSampled: record k of total is in the sample of the upgrade's crash
// sweep that `make test` takes.
func crashSampled(k, total int) bool { return k%10 == 1 || k == total }

// crashAnywhere runs the crash-anywhere check for each record k of a full
// upgrade that take(k, total) selects, in parallel subtests.
func crashAnywhere(t *testing.T, take func(k, total int) bool) {
	ref := newLab(t, 1, "3.4.1")
	ref.mustSucceed("upgrade", "3.4.2", "--yes")
	want := nodeState(t, ref.core().Root)
	rep, err := resume.Read(ref.journalPath())
	if err != nil {
		t.Fatal(err)
	}
	total := len(rep.Records)
	if total < 100 {
		t.Fatalf("a full run wrote only %d journal records", total)
	}
	for k := 1; k <= total; k++ {
		if !take(k, total) {
			continue
		}
		t.Run(fmt.Sprintf("record-%03d", k), func(t *testing.T) {
			t.Parallel()
			lab := newLab(t, 1, "3.4.1")
			lab.crashAt(k, "upgrade", "3.4.2", "--yes")
			args := []string{"upgrade", "--resume"}
			if k == 1 {
				args = []string{"upgrade", "3.4.2", "--yes"} // no run began: start it again
			}
			r := lab.sentinel(nil, args...)
			if r.code != 0 {
				t.Fatalf("resume after crash at record %d: exit %d\n%s\n%s", k, r.code, r.stdout, r.stderr)
			}
			if got := nodeState(t, lab.core().Root); !reflect.DeepEqual(got, want) {
				t.Errorf("after crash at record %d and resume the node differs from an uninterrupted run:\n got %v\nwant %v", k, got, want)
			}
			// Resuming again is harmless.
			if r := lab.sentinel(nil, "upgrade", "--resume"); r.code != 0 || !strings.Contains(r.stdout, "Nothing to resume") {
				t.Errorf("second resume: exit %d %s %s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// A session agent (the local transport's) answers each request in turn,
// each answer ending with its result or error event; a bad request is
// refused without ending the session; the end of stdin ends it, exit 0.
func TestAgentSessionAnswersEachRequest(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	root := lab.core().Root
	cmd := exec.Command(sentinelBin, "node", "session", "--root", root, "--node", "core")
	cmd.Stdin = strings.NewReader(`{"op":"facts","request":null}
{"op":"install","request":{"component":"../x","version":"3.4.2"}}
{"op":"facts","request":{"no_such_field":1}}
{"op":"facts","request":{}}
`)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("session: %v\n%s", err, out)
	}
	var finals []cluster.Event
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var ev cluster.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not an event: %q", line)
		}
		if ev.Kind == "result" || ev.Kind == "error" {
			finals = append(finals, ev)
		}
	}
	want := []string{"result", "error", "error", "result"}
	if len(finals) != len(want) {
		t.Fatalf("%d answers, want %d:\n%s", len(finals), len(want), out)
	}
	for i, ev := range finals {
		if ev.Kind != want[i] {
			t.Errorf("answer %d: %s %s, want %s", i+1, ev.Kind, ev.Message, want[i])
		}
	}
	if !strings.Contains(finals[1].Message, "is not a component name") || !strings.Contains(finals[2].Message, "no_such_field") {
		t.Errorf("the refusals say %q and %q", finals[1].Message, finals[2].Message)
	}
	var res steps.Result
	if err := json.Unmarshal(finals[3].Result, &res); err != nil || res.Facts == nil || res.Facts.Record == nil || res.Facts.Record.Release != "3.4.1" {
		t.Errorf("the last answer: %s %v", finals[3].Result, err)
	}
}

// An agent whose orchestrator died before sending its request reads an
// empty stdin: a local agent between its parent's pipes closing and its
// parent-death signal, one over SSH for good (sshd closes its stdin and
// leaves it running). It must refuse and change nothing: it used to take
// the zero request, and an install for no component made
// <root>/code/releases, a component with no current link (CI, stop 24,
// record 56 of the crash sweep).
func TestAgentWithoutARequestDoesNothing(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	root := lab.core().Root
	before := treeDigest(t, root)
	for _, op := range []string{"install", "stop", "switch", "start", "fetch", "commit"} {
		cmd := exec.Command(sentinelBin, "node", op, "--root", root, "--node", "core")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("node %s with an empty stdin: %v, want exit 2\n%s", op, err, out)
		}
		if !strings.Contains(string(out), "no request on stdin") || !strings.Contains(string(out), "nothing was done") {
			t.Errorf("node %s with an empty stdin printed %s", op, out)
		}
	}
	if treeDigest(t, root) != before {
		t.Error("an agent without a request changed the node root")
	}
	// The node is as it was: the next run finds every component.
	_ = nodeState(t, root)
	lab.mustSucceed("upgrade", "3.4.2", "--yes")
}

// recordOffsets returns where each journal record's frame starts.
func recordOffsets(t *testing.T, data []byte) []int {
	t.Helper()
	var offs []int
	for off := 8; off+8 <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		offs = append(offs, off)
		off += 8 + n
	}
	return offs
}

// A torn last record (cut short, or a flipped byte) is set aside and the
// run resumes; a flipped byte in a middle record stops with an error that
// names the journal and the offset, and changes nothing.
func TestTornJournal(t *testing.T) {
	t.Parallel()
	ref := newLab(t, 1, "3.4.1")
	ref.mustSucceed("upgrade", "3.4.2", "--yes")
	want := nodeState(t, ref.core().Root)

	damage := map[string]func(data []byte, offs []int) []byte{
		"last record cut short": func(data []byte, offs []int) []byte { return data[:len(data)-7] },
		"last record cut inside its header": func(data []byte, offs []int) []byte {
			return data[:offs[len(offs)-1]+3]
		},
		"flipped byte in last record": func(data []byte, offs []int) []byte {
			data[offs[len(offs)-1]+20] ^= 0x40
			return data
		},
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lab := newLab(t, 1, "3.4.1")
			lab.crashAt(60, "upgrade", "3.4.2", "--yes")
			path := lab.journalPath()
			data, _ := os.ReadFile(path)
			if err := os.WriteFile(path, f(data, recordOffsets(t, data)), 0o644); err != nil {
				t.Fatal(err)
			}
			st := lab.sentinel(nil, "status")
			if !strings.Contains(st.stdout, "torn last record") {
				t.Errorf("status does not mention the torn record:\n%s", st.stdout)
			}
			r := lab.sentinel(nil, "upgrade", "--resume")
			if r.code != 0 {
				t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "torn") {
				t.Errorf("resume did not report the torn tail:\n%s", r.stderr)
			}
			saved, _ := filepath.Glob(path + ".torn-*")
			if len(saved) != 1 {
				t.Errorf("torn tail not kept aside: %v", saved)
			}
			if got := nodeState(t, lab.core().Root); !reflect.DeepEqual(got, want) {
				t.Errorf("node differs from an uninterrupted run:\n got %v\nwant %v", got, want)
			}
		})
	}

	t.Run("flipped byte in a middle record", func(t *testing.T) {
		t.Parallel()
		lab := newLab(t, 1, "3.4.1")
		lab.crashAt(60, "upgrade", "3.4.2", "--yes")
		path := lab.journalPath()
		data, _ := os.ReadFile(path)
		offs := recordOffsets(t, data)
		data[offs[30]+20] ^= 0x40
		os.WriteFile(path, data, 0o644)
		before := nodeDigest(t, lab.core().Root)

		r := lab.sentinel(nil, "upgrade", "--resume")
		if r.code != 1 {
			t.Fatalf("resume of a corrupt journal: exit %d, want 1\n%s", r.code, r.stderr)
		}
		for _, want := range []string{path, fmt.Sprintf("byte %d", offs[30])} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("error lacks %q:\n%s", want, r.stderr)
			}
		}
		if after, _ := os.ReadFile(path); string(after) != string(data) {
			t.Error("the corrupt journal was modified")
		}
		if nodeDigest(t, lab.core().Root) != before {
			t.Error("the node changed although the journal is corrupt")
		}
	})
}
