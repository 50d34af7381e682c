package cache

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	crashHelperEnv    = "SENTINEL_CACHE_CRASH_HELPER"
	smallSocketBuffer = 64 << 10
)

// TestTransferCrashHelper is the child of TestTransferKill9Resumes: it
// fetches one artifact and prints its TransferStats as a "STATS {...}"
// line.
func TestTransferCrashHelper(t *testing.T) {
	if os.Getenv(crashHelperEnv) != "1" {
		t.Skip("helper process of TestTransferKill9Resumes")
	}
	size, _ := strconv.ParseInt(os.Getenv("CRASH_SIZE"), 10, 64)
	ckpt, _ := strconv.ParseInt(os.Getenv("CRASH_CHECKPOINT"), 10, 64)
	// A small receive buffer (no autotuning) keeps what the parent counts
	// as sent close to what this process has read.
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, smallSocketBuffer)
		})
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	s := &Store{Dir: os.Getenv("CRASH_DIR"), HTTP: client, CheckpointBytes: ckpt, RetryBase: time.Millisecond}
	st, err := s.FetchStats(context.Background(), os.Getenv("CRASH_URL"), os.Getenv("CRASH_DIGEST"), size)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	b, _ := json.Marshal(st)
	fmt.Printf("STATS %s\n", b)
}

// TestTransferKill9Resumes SIGKILLs a process that is downloading a
// 64 MiB artifact, 20 times at random byte counts, then lets a last run
// finish. The origin (run here, in the parent) signals through a channel
// when it has sent the chosen number of bytes of a response; that is when
// the child is killed. After the first kill every request resumes from a
// later or equal offset, the last run verifies, and reads back from disk
// only the prefix it resumed from (to hash it again), never more.
func TestTransferKill9Resumes(t *testing.T) {
	if testing.Short() {
		t.Skip("21 child processes and 64 MiB: skipped with -short")
	}
	if os.Getenv(crashHelperEnv) != "" {
		t.Skip("not in the helper")
	}
	data, digest := big64()
	size := int64(len(data))
	const kills = 20
	const ckpt = 256 << 10

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 20))
	t.Logf("seed %d", seed)
	// Socket buffers are small on both sides (64 KiB asked, so at most a
	// few hundred KiB in flight): a run killed after the origin sent n
	// bytes has read most of them. The first run gets past several
	// checkpoints before it dies; the later ones die at 768 KiB to 1.5 MiB,
	// past at least one checkpoint. All thresholds together stay well
	// below the size, so no run can finish before it is killed.
	thresholds := []int64{4 * mib}
	for len(thresholds) < kills {
		thresholds = append(thresholds, 768<<10+rng.Int64N(768<<10))
	}

	var threshold atomic.Int64
	type run struct {
		reached chan struct{}
		once    sync.Once
	}
	var current atomic.Pointer[run]
	var served atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int) {
		cur := current.Load()
		tw := &thresholdWriter{ResponseWriter: w, at: threshold.Load(), fire: func() { cur.once.Do(func() { close(cur.reached) }) }}
		serve(tw, r, data, `"crash-v1"`)
		served.Add(tw.sent)
	}, func(srv *http.Server) {
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			c.(*net.TCPConn).SetWriteBuffer(smallSocketBuffer)
			return ctx
		}
	})

	dir := t.TempDir()
	child := func() (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTransferCrashHelper$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(),
			crashHelperEnv+"=1",
			"CRASH_URL="+o.URL, "CRASH_DIGEST="+digest, "CRASH_DIR="+dir,
			fmt.Sprintf("CRASH_SIZE=%d", size), fmt.Sprintf("CRASH_CHECKPOINT=%d", ckpt))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		return cmd, &stdout, &stderr
	}

	for i, th := range thresholds {
		cur := &run{reached: make(chan struct{})}
		current.Store(cur)
		threshold.Store(th)
		cmd, stdout, stderr := child()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-cur.reached:
			cmd.Process.Kill() // SIGKILL
			<-exited
		case err := <-exited:
			t.Fatalf("run %d exited (%v) before sending %d bytes:\n%s%s", i, err, th, stdout, stderr)
		case <-time.After(2 * time.Minute): // a guard, not synchronisation
			cmd.Process.Kill()
			t.Fatalf("run %d neither finished nor reached %d bytes", i, th)
		}
	}

	threshold.Store(1 << 62)
	current.Store(&run{reached: make(chan struct{})})
	cmd, stdout, stderr := child()
	if err := cmd.Run(); err != nil {
		t.Fatalf("last run: %v\n%s%s", err, stdout, stderr)
	}
	var st TransferStats
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "STATS "); ok {
			if err := json.Unmarshal([]byte(line), &st); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("last run: %+v; %d bytes served in all for a %d byte artifact", st, served.Load(), size)

	reqs := o.requests()
	t.Logf("thresholds %v\nrequests %+v", thresholds, reqs)
	if len(reqs) != kills+1 {
		t.Errorf("%d requests for %d runs", len(reqs), kills+1)
	}
	advanced := 0
	for i, r := range reqs {
		if i == 0 {
			continue
		}
		if i > 1 && r.Start > reqs[i-1].Start {
			advanced++
		}
		if r.Start <= 0 {
			t.Errorf("request %d (after kill %d) started at %d: want a resume", r.N, i, r.Start)
		}
		if r.Start < reqs[i-1].Start {
			t.Errorf("request %d resumed from %d, before request %d's %d", r.N, r.Start, r.N-1, reqs[i-1].Start)
		}
		if r.IfRange != `"crash-v1"` {
			t.Errorf("request %d has If-Range %q", r.N, r.IfRange)
		}
	}
	// Each killed run read past a checkpoint, so resumes move forward;
	// allow for a few runs the scheduler starved.
	if advanced < kills/2 {
		t.Errorf("only %d of %d resumes started later than the one before", advanced, kills-1)
	}
	// The last run re-hashed the checkpointed prefix from disk, once.
	if !st.Downloaded || st.BytesReadFromPartial != st.ResumedFrom || st.RestartsFromZero != 0 || st.PrefixChanged {
		t.Errorf("last run: downloaded %v, read %d bytes of the partial file back (resumed from %d), %d restarts from zero",
			st.Downloaded, st.BytesReadFromPartial, st.ResumedFrom, st.RestartsFromZero)
	}
	if last := reqs[len(reqs)-1]; st.ResumedFrom != last.Start || st.BytesReceived != size-last.Start {
		t.Errorf("last run resumed from %d and received %d; its request started at %d", st.ResumedFrom, st.BytesReceived, last.Start)
	}
	// What a kill costs is what was received since the last checkpoint
	// plus what was in flight: well under a checkpoint interval and a MiB.
	if limit := size + kills*(ckpt+mib); served.Load() > limit {
		t.Errorf("origin served %d bytes for a %d byte artifact over %d kills: more than %d", served.Load(), size, kills, limit)
	}
	verifyStored(t, &Store{Dir: dir}, digest)
}
