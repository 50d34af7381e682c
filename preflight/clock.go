package preflight

import (
	"context"
	"fmt"
	"time"
)

// NameClockSkew is the check of each node's clock against the
// orchestrator's.
const NameClockSkew = "ClockSkew"

// Clock skew thresholds. Verification reads the clock: a node whose clock
// is behind sees the cache daemon's certificate (valid from the moment it
// was made) as not yet valid, and one far off either way takes the
// channel's signed metadata for expired or not yet expired. Signed
// metadata lives for days and certificates for months, so minutes break
// nothing but fresh certificates; 5 minutes is also Kerberos' tolerance,
// which operators already keep. Beyond 30 s, NTP is not doing its job.
const (
	ClockSkewWarn = 30 * time.Second
	ClockSkewFail = 5 * time.Minute
)

// ClockFacts is a node's clock compared with the orchestrator's: its
// reading, taken somewhere between the request's departure and the
// answer's arrival, is compared with the middle of that interval, so the
// error is at most half the round trip.
type ClockFacts struct {
	Skew        time.Duration // node minus orchestrator: positive when the node is ahead
	Uncertainty time.Duration // half the round trip
}

// ClockSkew estimates the skew of a node's clock that read node between
// sent and received, both on the orchestrator's clock.
func ClockSkew(sent, received, node time.Time) ClockFacts {
	rtt := received.Sub(sent)
	return ClockFacts{Skew: node.Sub(sent.Add(rtt / 2)), Uncertainty: rtt / 2}
}

// ClockCheck fails when a node's clock is surely more than ClockSkewFail
// off (beyond the measurement's uncertainty), and warns beyond
// ClockSkewWarn.
type ClockCheck struct{ Facts ClockFacts }

func (c ClockCheck) Name() string { return NameClockSkew }

func (c ClockCheck) Check(context.Context) (warnings, errs []error) {
	skew := c.Facts.Skew.Abs()
	way := "ahead of"
	if c.Facts.Skew < 0 {
		way = "behind"
	}
	said := fmt.Sprintf("the node's clock is %s %s this machine's (±%s)", skew.Round(time.Second), way, upToMillisecond(c.Facts.Uncertainty))
	switch {
	case skew-c.Facts.Uncertainty > ClockSkewFail:
		return nil, []error{fmt.Errorf("%s, more than %s: certificates and the channel's signed metadata would be judged by the wrong time (a fresh certificate not yet valid, metadata expired or not); set the time right on the node or here (NTP: chrony or systemd-timesyncd) and run again", said, ClockSkewFail)}
	case skew > ClockSkewWarn:
		return []error{fmt.Errorf("%s, more than %s: check NTP on the node (it fails beyond %s)", said, ClockSkewWarn, ClockSkewFail)}, nil
	}
	return nil, nil
}

// upToMillisecond rounds an uncertainty up to whole milliseconds, 1 ms at
// the least: a round trip to a local agent can take well under one, and
// "±0s" would claim an exact reading.
func upToMillisecond(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return time.Millisecond
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}
