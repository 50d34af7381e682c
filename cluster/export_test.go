package cluster

import "time"

// For the SSH transport's tests in package cluster_test, which run against
// a real sshd (fixtures' starter, which imports this package).

// SetKeepAlive sets how often s asks the node for a sign of life (15 s in
// production), so that a frozen node is given up on quickly.
func (s *SSH) SetKeepAlive(every time.Duration) { s.keepAlive = every }

// Command is the shell command line s runs on the node for args.
func (s *SSH) Command(args ...string) string { return s.command(args...) }

// SetDialTimeout sets how long s gives a node to answer a connection and
// log in (10 s in production).
func (s *SSH) SetDialTimeout(d time.Duration) { s.dialTimeout = d }
