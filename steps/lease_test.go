package steps

import (
	"context"
	"testing"
	"time"

	"github.com/sentinel-paas/sentinel/release"
)

func TestLease(t *testing.T) {
	a := &Agent{Node: "core", Layout: Layout{Root: t.TempDir()}}
	ask := func(action, owner, token string, ttl time.Duration) *LeaseResult {
		t.Helper()
		res, err := a.lease(context.Background(), Request{Lease: &LeaseRequest{Action: action, Owner: owner, Token: token, TTL: release.Duration(ttl), Holding: owner + " run"}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Lease
	}
	if r := ask(LeaseTake, "ops@a:/s", "t1", time.Minute); r.Held != nil {
		t.Fatalf("a free lease was refused: %+v", r.Held)
	}
	if r := ask(LeaseTake, "ops@b:/s", "t2", time.Minute); r.Held == nil || r.Held.Owner != "ops@a:/s" || r.Held.Holding != "ops@a:/s run" {
		t.Fatalf("another owner took a held lease: %+v", r)
	}
	if r := ask(LeaseTake, "ops@a:/s", "t3", time.Minute); r.Held != nil {
		t.Errorf("the same owner (a resume) could not take its lease over: %+v", r.Held)
	}
	if r := ask(LeaseRenew, "ops@a:/s", "t3", time.Minute); r.Held != nil {
		t.Errorf("renewing: %+v", r.Held)
	}
	if r := ask(LeaseRelease, "ops@b:/s", "t2", 0); r.Held == nil {
		t.Error("another owner released a held lease")
	}
	ask(LeaseRelease, "ops@a:/s", "t3", 0)
	if r := ask(LeaseTake, "ops@b:/s", "t2", -time.Second); r.Held != nil {
		t.Errorf("a released lease was refused: %+v", r.Held)
	}
	// b's lease has expired already: c takes it.
	if r := ask(LeaseTake, "ops@c:/s", "t4", time.Minute); r.Held != nil {
		t.Errorf("an expired lease was refused: %+v", r.Held)
	}
	if _, err := a.lease(context.Background(), Request{}); err == nil {
		t.Error("a request without a lease was taken")
	}
}
