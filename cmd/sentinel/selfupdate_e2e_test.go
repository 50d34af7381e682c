package main

import (
	"github.com/sentinel-paas/sentinel/lifecycle"

	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/selfupdate"
	"github.com/sentinel-paas/sentinel/steps"
)

// Two numbered builds of sentinel, built once for the self-update tests
// beside the harness's (development) build: 0.1.0 is the one installed,
// 0.2.0 the newer one a channel offers.
var (
	numberedOnce sync.Once
	numbered     map[string]string // version -> executable
	numberedErr  error
)

func numberedBuild(t *testing.T, v string) string {
	t.Helper()
	numberedOnce.Do(func() {
		numbered = map[string]string{}
		for _, v := range []string{"0.1.0", "0.2.0"} {
			out := filepath.Join(filepath.Dir(sentinelBin), "sentinel-"+v)
			b := testBuild("-ldflags", "-X main.version="+v, "-o", out, ".")
			if msg, err := b.CombinedOutput(); err != nil {
				numberedErr = fmt.Errorf("building sentinel %s: %v\n%s", v, err, msg)
				return
			}
			numbered[v] = out
		}
	})
	if numberedErr != nil {
		t.Fatal(numberedErr)
	}
	return numbered[v]
}

// installed copies a build to its own directory, as an operator's
// /usr/local/bin/sentinel: a self-update replaces that copy.
func installed(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bin", "sentinel")
	os.MkdirAll(filepath.Dir(p), 0o755)
	writeExecutable(t, p, mustRead(t, src))
	return p
}

func publishBuilds(t *testing.T, lab *testLab, builds ...fixtures.SentinelBuildFile) {
	t.Helper()
	for i := range builds {
		builds[i].OS, builds[i].Arch = runtime.GOOS, runtime.GOARCH
	}
	if err := lab.PublishSentinelBuilds(builds...); err != nil {
		t.Fatal(err)
	}
}

// binaries is which sentinel builds the lab's last run journal says ran
// it, as "version" or "version<updated-from".
func (l *testLab) binaries() []string {
	l.t.Helper()
	run, _, err := rollout.Runs{Dir: l.inventory().State()}.Latest()
	if err != nil || run == nil {
		l.t.Fatalf("no run: %v", err)
	}
	var out []string
	for _, b := range run.Binaries() {
		s := b.Version
		if b.UpdatedFrom != "" {
			s += "<" + b.UpdatedFrom
		}
		out = append(out, s)
	}
	return out
}

// wantUpgraded fails unless every node of the lab is on release v, each
// component's current link on it.
func (l *testLab) wantUpgraded(v string) {
	l.t.Helper()
	for _, n := range l.Nodes {
		rec, err := steps.ReadRecord(n.Root)
		if err != nil || rec.Release != v {
			l.t.Fatalf("node %s: release %+v (%v), want %s", n.Name, rec, err, v)
		}
		for c := range rec.Components {
			target, err := os.Readlink(filepath.Join(n.Root, "code", c, "current"))
			if err != nil || !strings.Contains(target, v) {
				l.t.Fatalf("node %s: %s current -> %s (%v), want release %s", n.Name, c, target, err, v)
			}
		}
	}
}

// crashOld starts an upgrade to 3.4.2 with bin and SIGKILLs it after
// journal record k: a run that bin started and did not finish.
func (l *testLab) crashOld(bin string, k int) {
	l.t.Helper()
	r := l.run(bin, []string{fmt.Sprintf("%s=%d", resume.CrashAfterRecordEnv, k)}, "upgrade", "3.4.2", "--yes")
	if r.signal != syscall.SIGKILL {
		l.t.Fatalf("upgrade with a crash after record %d: exit %d signal %v\n%s", k, r.code, r.signal, r.stderr)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "|") == strings.Join(b, "|") }

// Must-show 4: with a newer signed build in the channel, the installed
// 0.1.0 replaces itself on disk (0.1.0 kept as .old), re-executes, and the
// new process goes on with the same run from its journal: the journal says
// 0.1.0 started it and 0.2.0, updated from 0.1.0, finished it.
func TestSelfUpdateContinuesRunInNewBuild(t *testing.T) {
	t.Parallel()
	old, newer := numberedBuild(t, "0.1.0"), numberedBuild(t, "0.2.0")
	lab := newLab(t, 1, "3.4.1")
	bin := installed(t, old)

	// 0.1.0 starts the run while the channel offers no newer build.
	lab.crashOld(bin, 12)
	if got := lab.binaries(); !equal(got, []string{"0.1.0"}) {
		t.Fatalf("journal binaries %v, want [0.1.0]", got)
	}
	publishBuilds(t, lab, fixtures.SentinelBuildFile{Path: newer, Version: "0.2.0"})

	r := lab.mustRun(bin, nil, "upgrade", "--resume")
	if fileSum(t, bin) != fileSum(t, newer) || fileSum(t, bin+".old") != fileSum(t, old) {
		t.Fatalf("after the self-update: %s is not the 0.2.0 build, or %s.old not the 0.1.0 one\n%s", bin, bin, r.stderr)
	}
	if got := lab.binaries(); !equal(got, []string{"0.1.0", "0.2.0<0.1.0"}) {
		t.Fatalf("journal binaries %v, want [0.1.0 0.2.0<0.1.0]\n%s", got, r.stderr)
	}
	if !strings.Contains(r.stderr, "now running sentinel 0.2.0 (updated from 0.1.0)") {
		t.Errorf("stderr does not say the new build took over:\n%s", r.stderr)
	}
	lab.wantUpgraded("3.4.2")
	if v := lab.mustRun(bin, nil, "version").stdout; !strings.HasPrefix(v, "sentinel 0.2.0 ") {
		t.Errorf("the installed sentinel says %q", v)
	}
	if st := lab.mustRun(bin, nil, "status").stdout; !strings.Contains(st, "sentinel builds: 0.1.0, then 0.2.0") {
		t.Errorf("status does not show both builds:\n%s", st)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(bin), ".sentinel.new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".sentinel.new left behind: %v", err)
	}

	// Up to date now: a further run does not touch the executable.
	before := fileSum(t, bin)
	lab.mustRun(bin, nil, "upgrade", "3.4.3", "--yes")
	if fileSum(t, bin) != before || !equal(lab.binaries(), []string{"0.2.0"}) {
		t.Fatalf("an up-to-date build changed the executable, or the run says %v", lab.binaries())
	}
}

// --update-self: alone it only updates (no run); with VERSION the new run
// is done by the new build; a development build is replaced only when
// asked, never automatically, and a newer installed build is never
// downgraded.
func TestSelfUpdateExplicit(t *testing.T) {
	t.Parallel()
	old, newer := numberedBuild(t, "0.1.0"), numberedBuild(t, "0.2.0")
	lab := newLab(t, 1, "3.4.1")
	publishBuilds(t, lab, fixtures.SentinelBuildFile{Path: newer, Version: "0.2.0"})

	t.Run("alone", func(t *testing.T) {
		bin := installed(t, old)
		r := lab.mustRun(bin, nil, "upgrade", "--update-self")
		if fileSum(t, bin) != fileSum(t, newer) || !strings.Contains(r.stdout, "Updated sentinel 0.1.0 to 0.2.0") {
			t.Fatalf("not updated:\n%s\n%s", r.stdout, r.stderr)
		}
		if p, _ := (rollout.Runs{Dir: lab.inventory().State()}).LatestPath(); p != "" {
			t.Fatalf("--update-self alone started a run: %s", p)
		}
	})
	t.Run("development build, automatic: untouched", func(t *testing.T) {
		bin := installed(t, sentinelBin)
		r := lab.run(bin, nil, "upgrade", "--resume") // no run to resume: exit 2, after the self-update step
		if r.code != 2 || fileSum(t, bin) != fileSum(t, sentinelBin) || strings.Contains(r.stderr, "self-update") {
			t.Fatalf("a development build replaced itself, or tried to: exit %d\n%s", r.code, r.stderr)
		}
	})
	t.Run("never a downgrade", func(t *testing.T) {
		bin := installed(t, newer)
		publishBuilds(t, lab, fixtures.SentinelBuildFile{Path: old, Version: "0.1.0"})
		defer publishBuilds(t, lab, fixtures.SentinelBuildFile{Path: newer, Version: "0.2.0"})
		r := lab.mustRun(bin, nil, "upgrade", "--update-self")
		if fileSum(t, bin) != fileSum(t, newer) || !strings.Contains(r.stderr, "no downgrade") {
			t.Fatalf("0.2.0 was replaced by 0.1.0, or not told why not:\n%s", r.stderr)
		}
	})
	t.Run("with a version: the run is the new build's", func(t *testing.T) {
		bin := installed(t, sentinelBin) // a development build: replaced only because asked
		lab.mustRun(bin, nil, "upgrade", "3.4.2", "--yes", "--update-self")
		if fileSum(t, bin) != fileSum(t, newer) || fileSum(t, bin+".old") != fileSum(t, sentinelBin) {
			t.Fatal("the development build was not replaced by 0.2.0 (and kept as .old)")
		}
		if got := lab.binaries(); !equal(got, []string{"0.2.0"}) {
			t.Fatalf("journal binaries %v, want [0.2.0]", got)
		}
		lab.wantUpgraded("3.4.2")
	})
}

// Must-show 4, the other half: a new build that fails its health check is
// never kept. Broken outright, it is refused before it takes the
// executable's name; passing its check as .sentinel.new but failing once
// in place, it is rolled back (the old build renamed back). Either way
// the run goes on with the old build and succeeds; --update-self alone
// fails (exit 1) saying so.
func TestSelfUpdateFailedCheckRolledBack(t *testing.T) {
	t.Parallel()
	old := numberedBuild(t, "0.1.0")
	for _, tc := range []struct{ name, script, says string }{
		{"broken", "#!/bin/sh\necho 'sentinel: cannot start: bad build' >&2\nexit 1\n", "bad build"},
		{"fails once in place", "#!/bin/sh\ncase \"$0\" in *.new) echo 'sentinel 0.2.0 (x)'; exit 0;; esac\necho 'sentinel: cannot start from here' >&2\nexit 3\n", "previous build was put back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := newLab(t, 1, "3.4.1")
			bad := filepath.Join(t.TempDir(), "bad")
			writeExecutable(t, bad, []byte(tc.script))
			publishBuilds(t, lab, fixtures.SentinelBuildFile{Path: bad, Version: "0.2.0"})
			bin := installed(t, old)

			r := lab.run(bin, nil, "upgrade", "--update-self")
			if r.code != 1 || !strings.Contains(r.stderr, "failed its health check") || !strings.Contains(r.stderr, tc.says) {
				t.Fatalf("--update-self with a bad build: exit %d, want 1 saying %q\n%s", r.code, tc.says, r.stderr)
			}
			if fileSum(t, bin) != fileSum(t, old) {
				t.Fatal("the bad build stayed in place")
			}

			r = lab.mustRun(bin, nil, "upgrade", "3.4.2", "--yes")
			if !strings.Contains(r.stderr, "failed its health check") || !strings.Contains(r.stderr, "going on with sentinel 0.1.0") {
				t.Errorf("the run does not say the new build was refused:\n%s", r.stderr)
			}
			if fileSum(t, bin) != fileSum(t, old) {
				t.Fatal("the bad build stayed in place")
			}
			if got := lab.binaries(); !equal(got, []string{"0.1.0"}) {
				t.Fatalf("journal binaries %v, want [0.1.0]", got)
			}
			lab.wantUpgraded("3.4.2")
			for _, left := range []string{".sentinel.new"} {
				if _, err := os.Stat(filepath.Join(filepath.Dir(bin), left)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind", left)
				}
			}
		})
	}
}

// Must-show 5, first half: SIGKILL between the rename of the new build
// over the executable and the re-execution. The executable on disk is the
// new build, the run is unfinished; `sentinel recover`, run with what is
// now on disk, finishes it, and the journal says which build did what.
func TestRecoverAfterKillBetweenRenameAndReExec(t *testing.T) {
	t.Parallel()
	old, newer := numberedBuild(t, "0.1.0"), numberedBuild(t, "0.2.0")
	lab := newLab(t, 1, "3.4.1")
	bin := installed(t, old)
	lab.crashOld(bin, 20)
	publishBuilds(t, lab, fixtures.SentinelBuildFile{Path: newer, Version: "0.2.0"})

	r := lab.run(bin, []string{selfupdate.CrashAtEnv + "=" + selfupdate.CrashRenamed}, "upgrade", "--resume")
	if r.signal != syscall.SIGKILL {
		t.Fatalf("want a SIGKILL right after the rename: exit %d signal %v\n%s", r.code, r.signal, r.stderr)
	}
	if fileSum(t, bin) != fileSum(t, newer) || fileSum(t, bin+".old") != fileSum(t, old) {
		t.Fatal("after the rename the executable should be 0.2.0 and .old 0.1.0")
	}
	if got := lab.binaries(); !equal(got, []string{"0.1.0"}) {
		t.Fatalf("the killed process wrote to the journal: %v", got)
	}

	dry := lab.mustRun(bin, nil, "recover", "--dry-run")
	if want := "upgrade --resume --cluster " + lab.ClusterFile; !strings.Contains(dry.stdout, want) {
		t.Fatalf("recover --dry-run says %q, want a command with %q\n%s", dry.stdout, want, dry.stderr)
	}
	if !strings.Contains(dry.stderr, "it ran with sentinel 0.1.0; this is sentinel 0.2.0") {
		t.Errorf("recover does not say which builds:\n%s", dry.stderr)
	}
	r = lab.mustRun(bin, nil, "recover")
	if !strings.Contains(r.stderr, "did not finish") || !strings.Contains(r.stderr, "its last command") || !strings.Contains(r.stderr, "recovering with:") {
		t.Errorf("recover does not explain what it does:\n%s", r.stderr)
	}
	if got := lab.binaries(); !equal(got, []string{"0.1.0", "0.2.0"}) {
		t.Fatalf("journal binaries %v, want [0.1.0 0.2.0]", got)
	}
	lab.wantUpgraded("3.4.2")

	r = lab.run(bin, nil, "recover")
	if r.code != 2 || !strings.Contains(r.stderr, "nothing to recover") || !strings.Contains(r.stderr, "succeeded") {
		t.Fatalf("recover after the run finished: exit %d, want 2 and nothing to recover\n%s", r.code, r.stderr)
	}
}

// startBin runs bin in the background, its output readable line by line.
func (l *testLab) startBin(bin string, args ...string) (*exec.Cmd, *bufio.Reader) {
	l.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SENTINEL_CLUSTER="+l.ClusterFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, bufio.NewReader(out)
}

// Must-show 5, second half: the binary deleted while its run goes on. The
// run stops at the next step it cannot start an agent for (exit 75), and
// both documented recoveries finish it with a fresh binary: `sentinel
// recover`, and by hand, the docs' way (the command from the log, a binary
// put back where it was, --resume).
func TestRecoverAfterBinaryDeletedMidRun(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"sentinel recover", "by hand"} {
		t.Run(how, func(t *testing.T) {
			lab := newLab(t, 1, "3.4.1")
			bin := installed(t, sentinelBin)
			cmd, out := lab.startBin(bin, "upgrade", "3.4.2", "--yes", "--node-retries", "0")
			waitForLine(t, out, "3.4.2/backup")
			if err := os.Remove(bin); err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, out)
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
				t.Fatalf("the run whose binary went missing: %v, want exit %d", err, exitInterrupted)
			}
			run, _, err := rollout.Runs{Dir: lab.inventory().State()}.Latest()
			if err != nil || run.Finished() {
				t.Fatalf("the run should be unfinished: %+v %v", run, err)
			}

			switch how {
			case "sentinel recover":
				r := lab.mustRun(sentinelBin, nil, "recover")
				if !strings.Contains(r.stderr, lifecycle.CommandLine([]string{bin, "upgrade", "3.4.2", "--yes", "--node-retries", "0"})) {
					t.Errorf("recover does not show the logged command:\n%s", r.stderr)
				}
			case "by hand":
				// tac /s/logs/sentinel-cli.log | grep -m1 'Running with command'
				logged, err := lifecycle.LoggedCommands(filepath.Join(lab.core().Root, "logs", "sentinel-cli.log"))
				if err != nil || len(logged) == 0 {
					t.Fatalf("no command in the log: %v", err)
				}
				argv := logged[len(logged)-1].Argv
				if argv[0] != bin {
					t.Fatalf("the log's last command is %v, want the run's (%s ...)", argv, bin)
				}
				// Put a sentinel binary back, then `sentinel upgrade --resume`.
				writeExecutable(t, argv[0], mustRead(t, sentinelBin))
				lab.mustRun(argv[0], nil, "upgrade", "--resume")
			}
			lab.wantUpgraded("3.4.2")
		})
	}
}

// recover refuses when there is nothing to recover, and says why.
func TestRecoverRefusesWithNothingToRecover(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 1, "3.4.1")
	r := lab.sentinel(nil, "recover")
	if r.code != 2 || !strings.Contains(r.stderr, "nothing to recover: there is no run") {
		t.Fatalf("recover without a run: exit %d\n%s", r.code, r.stderr)
	}
}

// recover goes on with the options the run was started with, not with a
// later command that was turned away because the run was unfinished; and
// once the run is finished it says there is nothing to recover.
func TestRecoverUsesTheRunsOwnCommand(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 3, "3.4.1")
	lab.crashAt(40, "upgrade", "3.4.2", "--yes", "--max-in-flight", "2")
	if r := lab.sentinel(nil, "upgrade", "3.4.2", "--yes"); r.code != 2 {
		t.Fatalf("a plain upgrade beside an unfinished run: exit %d\n%s", r.code, r.stderr)
	}
	dry := lab.mustSucceed("recover", "--dry-run").stdout
	if !strings.Contains(dry, "upgrade --resume") || !strings.Contains(dry, "--max-in-flight 2") {
		t.Errorf("recover would run %q: want the run's own --max-in-flight 2", dry)
	}
	lab.mustSucceed("recover")
	if r := lab.sentinel(nil, "recover"); r.code != 2 || strings.Contains(r.stderr, "started no run") {
		t.Errorf("recover after the run finished: exit %d\n%s", r.code, r.stderr)
	}
}

// --download-only also puts the newest sentinel build (and its signed
// document) in the cache node; with the upstream gone, a run with
// --cache-ip updates sentinel from the cache by digest, and nothing at all
// reaches the upstream.
func TestSelfUpdateFromCacheNode(t *testing.T) {
	t.Parallel()
	old, newer := numberedBuild(t, "0.1.0"), numberedBuild(t, "0.2.0")
	lab := newLab(t, 1, "3.4.1")
	publishBuilds(t, lab, fixtures.SentinelBuildFile{Path: newer, Version: "0.2.0"})
	lab.startCache(nil)
	bin := installed(t, old)

	r := lab.mustRun(bin, nil, "upgrade", "3.4.2", "--download-only", "--cache-ip", lab.cacheIP)
	if !strings.Contains(r.stdout, "sentinel 0.2.0 fetched and verified") {
		t.Errorf("download-only does not say it cached the sentinel build:\n%s", r.stdout)
	}
	if fileSum(t, bin) != fileSum(t, old) {
		t.Fatal("--download-only replaced the executable")
	}
	tw := lab.cutUpstream()

	r = lab.mustRun(bin, nil, "upgrade", "3.4.2", "--cache-ip", lab.cacheIP, "--yes")
	if fileSum(t, bin) != fileSum(t, newer) {
		t.Fatalf("not updated from the cache node:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "fetching it from https://"+lab.cacheIP+"/artifacts/sha256/") {
		t.Errorf("the build did not come from the cache node:\n%s", r.stderr)
	}
	if got := lab.binaries(); !equal(got, []string{"0.2.0"}) {
		t.Fatalf("journal binaries %v, want [0.2.0]", got)
	}
	lab.wantUpgraded("3.4.2")
	if n := tw.hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the upstream", n)
	}
}

// The pushed node binaries follow: over SSH each node runs the
// orchestrator's own build, compared by digest. A run begun by 0.1.0
// pushed 0.1.0 to every node; after the self-update the resumed run, in
// 0.2.0, pushes 0.2.0.
func TestSelfUpdatePushedBinariesFollow(t *testing.T) {
	t.Parallel()
	old, newer := numberedBuild(t, "0.1.0"), numberedBuild(t, "0.2.0")
	lab, sshds := sshLab(t, 2)
	bin := installed(t, old)
	lab.crashOld(bin, 30)
	pushed := func(want string) {
		t.Helper()
		for _, n := range lab.Nodes {
			if got := fileSum(t, n.RemoteBinary); got != fileSum(t, want) {
				t.Fatalf("node %s runs %s (sha256 %s), want the build of %s", n.Name, n.RemoteBinary, got, want)
			}
		}
	}
	pushed(old)
	publishBuilds(t, lab, fixtures.SentinelBuildFile{Path: newer, Version: "0.2.0"})
	lab.mustRun(bin, nil, "upgrade", "--resume")
	pushed(newer)
	if got := lab.binaries(); !equal(got, []string{"0.1.0", "0.2.0<0.1.0"}) {
		t.Fatalf("journal binaries %v", got)
	}
	lab.wantUpgraded("3.4.2")
	checkReachedOverSSH(t, sshds)
}

// A publisher offers a build with `sentinel channel add-sentinel`, and an
// installed build takes it; a builds document whose bytes are not the
// signed ones is refused, naming it, and nothing is replaced.
func TestSelfUpdateBuildsPublishedByChannelAddSentinel(t *testing.T) {
	t.Parallel()
	old, newer := numberedBuild(t, "0.1.0"), numberedBuild(t, "0.2.0")
	lab := newLab(t, 1, "3.4.1")
	lab.mustRun(sentinelBin, nil, "channel", "add-sentinel", "--keys", lab.KeysDir, "--version", "0.2.0",
		"--os", runtime.GOOS, "--arch", runtime.GOARCH, newer, lab.UpstreamDir)
	doc := lab.served("tools/sentinel.json")
	restore := flipOneByte(t, doc)
	bin := installed(t, old)
	if r := lab.run(bin, nil, "upgrade", "--update-self"); r.code != 2 || !strings.Contains(r.stderr, "tools/sentinel.json") || fileSum(t, bin) != fileSum(t, old) {
		t.Fatalf("a builds document not as signed: exit %d, want 2 naming it, and no update\n%s", r.code, r.stderr)
	}
	restore()
	lab.mustRun(bin, nil, "upgrade", "--update-self")
	if fileSum(t, bin) != fileSum(t, newer) {
		t.Fatal("not updated")
	}
}
