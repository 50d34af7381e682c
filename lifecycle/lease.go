package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sentinel-paas/sentinel/cluster"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/resume"
	"github.com/sentinel-paas/sentinel/steps"
)

// leaseTTL is how long the cluster's run lease lasts without renewal: a
// run that dies holds it that long at most (a resume from the same state
// directory takes it over at once). It is renewed every leaseTTL/4.
const leaseTTL = 2 * time.Minute

// clusterLease is this run's hold on the cluster's run lease, kept on the
// core node through its transport: the local run lock serialises the runs
// of one state directory, the lease those of every machine.
type clusterLease struct {
	tr    cluster.Transport
	req   steps.LeaseRequest
	stop  context.CancelFunc
	done  chan struct{}
	log   *zap.Logger
	warn  func(string)
	core  string
	where string
}

// takeLease takes the lease on the core node. A core that cannot be asked,
// or whose agent predates the lease, leaves the run to the local lock,
// with a warning.
func (r *Run) takeLease(ctx context.Context) error {
	if err := r.dialOnce(ctx); err != nil {
		return err
	}
	core := r.Inventory.Core()
	by, host := Operator()
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	l := &clusterLease{tr: r.Transports[core.Name], core: core.Name, log: r.Log, warn: r.warn,
		req: steps.LeaseRequest{Owner: fmt.Sprintf("%s@%s:%s", by, host, r.Inventory.State()), Token: hex.EncodeToString(token),
			TTL: release.Duration(leaseTTL), Holding: fmt.Sprintf("%s, pid %d", CommandLine(r.Command), os.Getpid())}}
	res, err := l.call(ctx, steps.LeaseTake)
	switch {
	case err != nil && isUnknownOp(err):
		r.warn(fmt.Sprintf("the core node %s's sentinel agent has no run lease (an older build): only the local run lock keeps runs apart", core.Name))
		return nil
	case err != nil:
		r.warn(fmt.Sprintf("cannot take the cluster's run lease on the core node %s (%v): only the local run lock keeps runs apart", core.Name, err))
		return nil
	case res.Held != nil:
		return &resume.LockedError{Path: core.Name + ":" + res.Path, Holder: fmt.Sprintf("%s, from %s, until %s unless renewed", res.Held.Holding, res.Held.Owner, res.Held.Expires.Format(time.RFC3339))}
	}
	l.where = res.Path
	var lctx context.Context
	lctx, l.stop = context.WithCancel(context.Background())
	l.done = make(chan struct{})
	go l.renew(lctx)
	r.lease = l
	return nil
}

func (l *clusterLease) call(ctx context.Context, action string) (*steps.LeaseResult, error) {
	req := l.req
	req.Action = action
	var res steps.Result
	if err := l.tr.Call(ctx, steps.OpLease, steps.Request{Lease: &req}, &res, nil); err != nil {
		return nil, err
	}
	if res.Lease == nil {
		return nil, errors.New("the agent gave no lease answer")
	}
	return res.Lease, nil
}

// renew keeps the lease until the run ends; a lease lost to another run
// is said loudly (the run goes on: stopping half-way would be worse).
func (l *clusterLease) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(leaseTTL / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := l.call(ctx, steps.LeaseRenew)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.log.Warn("renewing the cluster's run lease failed", zap.String("core", l.core), zap.Error(err))
		case res.Held != nil:
			l.warn(fmt.Sprintf("the cluster's run lease on %s was taken by %s (%s) after this run's expired", l.core, res.Held.Owner, res.Held.Holding))
		}
	}
}

// release gives the lease back, best effort: unreleased, it expires.
func (l *clusterLease) release() {
	l.stop()
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.call(ctx, steps.LeaseRelease); err != nil {
		l.log.Warn("giving back the cluster's run lease failed: it expires by itself", zap.String("core", l.core), zap.Error(err))
	}
}

// isUnknownOp reports whether the agent did not know the operation.
func isUnknownOp(err error) bool {
	var ae *cluster.AgentError
	return errors.As(err, &ae) && strings.Contains(ae.Message, "unknown operation")
}
