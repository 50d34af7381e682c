package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// linkShapeHandle is the handle of the loopback qdisc shapeSource adds,
// so that it removes only its own (also one a killed run left behind).
const linkShapeHandle = "5e1:"

// shapeSource limits what addr (IP:port, on loopback) sends to mbit
// megabits a second in all, as if the source sat behind a LAN link, with
// a token bucket (tc htb) on the loopback device that only that address
// and port's packets go through; everything else on loopback passes. In
// the lab every node shares one machine's CPU with the source, so an
// unshaped source's throughput is the machine's; shaped, the source is the
// bottleneck, as on a real cluster. It returns how to lift the limit, or
// why it cannot shape (not root, no tc, no htb, a qdisc of someone else's
// on loopback): the caller leaves the shaped measures out and says so.
func shapeSource(b *testing.B, addr string, mbit int) (undo func(), err error) {
	b.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("shaping loopback needs root")
	}
	tc, err := exec.LookPath("tc")
	if err != nil {
		return nil, fmt.Errorf("no tc (iproute2) to shape loopback: %w", err)
	}
	run := func(args ...string) error {
		out, err := exec.Command(tc, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	lift := func() { run("qdisc", "del", "dev", "lo", "root", "handle", linkShapeHandle) }
	out, err := exec.Command(tc, "qdisc", "show", "dev", "lo").CombinedOutput()
	switch {
	case err != nil:
		return nil, fmt.Errorf("tc qdisc show dev lo: %v: %s", err, out)
	case strings.Contains(string(out), "htb "+linkShapeHandle):
		lift() // left by a run that was killed
	case !strings.Contains(string(out), "noqueue"):
		return nil, fmt.Errorf("loopback already has a qdisc of its own, left alone: %s", out)
	}
	// Loopback's packets are up to 64 KiB: the buckets hold a few.
	cmds := [][]string{
		{"qdisc", "add", "dev", "lo", "root", "handle", linkShapeHandle, "htb", "default", "1", "r2q", "1000"},
		{"class", "add", "dev", "lo", "parent", linkShapeHandle, "classid", linkShapeHandle + "1", "htb", "rate", "100gbit", "quantum", "200000"},
		{"class", "add", "dev", "lo", "parent", linkShapeHandle, "classid", linkShapeHandle + "2", "htb",
			"rate", fmt.Sprintf("%dmbit", mbit), "ceil", fmt.Sprintf("%dmbit", mbit), "burst", "256k", "cburst", "256k", "quantum", "200000"},
		{"filter", "add", "dev", "lo", "parent", linkShapeHandle, "protocol", "ip", "prio", "1", "u32",
			"match", "ip", "src", host + "/32", "match", "ip", "sport", port, "0xffff", "flowid", linkShapeHandle + "2"},
	}
	for _, c := range cmds {
		if err := run(c...); err != nil {
			lift()
			return nil, err
		}
	}
	return lift, nil
}
