package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sentinel-paas/sentinel/durable"
	"github.com/sentinel-paas/sentinel/release"
)

// OpLease takes, renews or gives back the cluster's run lease, kept on the
// core node: one run at a time for the whole cluster, whichever machine it
// is started from. A lease has an owner (who, where, which state
// directory) and an expiry: a run that dies leaves it to expire, and a
// run with the same owner (a resume from the same journal) takes it over
// at once.
const OpLease = "lease"

// Lease actions.
const (
	LeaseTake    = "take"
	LeaseRenew   = "renew"
	LeaseRelease = "release"
)

// LeaseRequest asks for the lease.
type LeaseRequest struct {
	Action string           `json:"action"`
	Owner  string           `json:"owner"`
	Token  string           `json:"token"`
	TTL    release.Duration `json:"ttl,omitempty"`
	// Holding describes the run for whoever is refused ("sentinel upgrade
	// 3.4.2, pid 123").
	Holding string `json:"holding,omitempty"`
}

// Lease is the lease as the core node keeps it.
type Lease struct {
	Owner   string    `json:"owner"`
	Token   string    `json:"token"`
	Holding string    `json:"holding,omitempty"`
	Expires time.Time `json:"expires"`
}

// LeaseResult answers a lease request: Held is another run's lease, when
// the request was refused.
type LeaseResult struct {
	Path string `json:"path"`
	Held *Lease `json:"held,omitempty"`
}

func (a *Agent) leasePath() string {
	return filepath.Join(a.Layout.Root, "var", "sentinel", "cluster.lease")
}

// lease carries out a lease request under a file lock, so that two
// agents asked at once on the core node decide one after the other.
func (a *Agent) lease(ctx context.Context, req Request) (Result, error) {
	lr := req.Lease
	if lr == nil || lr.Token == "" || lr.Owner == "" {
		return Result{}, errors.New("lease: no owner or token in the request")
	}
	path := a.leasePath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Result{}, err
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	if err := durable.LockContext(ctx, f); err != nil {
		return Result{}, err
	}
	res := &LeaseResult{Path: path}
	cur, err := readLease(path)
	if err != nil {
		return Result{}, err
	}
	if cur != nil && cur.Token != lr.Token && cur.Owner != lr.Owner && time.Now().Before(cur.Expires) {
		res.Held = cur
		return Result{Lease: res}, nil
	}
	if lr.Action == LeaseRelease {
		if cur != nil && cur.Token == lr.Token {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return Result{}, err
			}
		}
		return Result{Lease: res}, nil
	}
	next := Lease{Owner: lr.Owner, Token: lr.Token, Holding: lr.Holding, Expires: time.Now().Add(time.Duration(lr.TTL))}
	data, err := json.Marshal(next)
	if err != nil {
		return Result{}, err
	}
	if err := durable.WriteFile(path, data, 0o600); err != nil {
		return Result{}, fmt.Errorf("writing the run lease %s: %w", path, err)
	}
	return Result{Lease: res, Changed: true}, nil
}

func readLease(path string) (*Lease, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l Lease
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, nil // a torn lease is no lease: nobody can prove holding it
	}
	return &l, nil
}
