package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"
)

// The orchestrator runs its own build of sentinel on every node: before
// the first operation on a connection, the node's binary is compared with
// the local one by sha256, and replaced (atomically, by rename) when it is
// missing or another build.

// ensureAgent makes sure the node's binary is the local one, pushing it if
// not. Called with s.sem held, on a fresh connection.
func (s *SSH) ensureAgent(ctx context.Context, c *sshConn, op string, on func(Event)) error {
	want, err := s.localDigest()
	if err != nil {
		return err
	}
	have, machine, err := s.remoteDigest(ctx, c, op)
	if err != nil {
		return err
	}
	if have == want {
		return nil
	}
	if err := s.checkMachine(machine); err != nil {
		return err
	}
	if err := s.upload(ctx, c, op, want); err != nil {
		return err
	}
	got, _, err := s.remoteDigest(ctx, c, op)
	if err != nil {
		return err
	}
	if got != want {
		if got == "" {
			got = "nothing (is sha256sum installed?)"
		}
		return fmt.Errorf("node %s: pushed %s to %s:%s, but its sha256 there is %s, not %s", s.Node.Name, s.LocalBinary, s.addr, s.remoteBinary, got, want)
	}
	if on != nil {
		was := "it had none"
		if have != "" {
			was = "it had sha256 " + have
		}
		on(Event{Kind: "log", Message: fmt.Sprintf("pushed sentinel (sha256 %s) to %s:%s (%s)", want, s.Node.Address, s.remoteBinary, was)})
	}
	return nil
}

// localDigest is the sha256 of the local binary, hashed once.
func (s *SSH) localDigest() (string, error) {
	s.localDigestMu.Lock()
	defer s.localDigestMu.Unlock()
	if s.localDigestVal != "" {
		return s.localDigestVal, nil
	}
	f, err := os.Open(s.LocalBinary)
	if err != nil {
		return "", fmt.Errorf("node %s: cannot read the sentinel binary to push: %w", s.Node.Name, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("node %s: cannot read the sentinel binary to push: %w", s.Node.Name, err)
	}
	s.localDigestVal = hex.EncodeToString(h.Sum(nil))
	return s.localDigestVal, nil
}

// remoteDigest is the sha256 of the node's binary ("" when it has none)
// and the node's machine (uname -m).
func (s *SSH) remoteDigest(ctx context.Context, c *sshConn, op string) (digest, machine string, err error) {
	script := "uname -m; sha256sum " + shellQuote(s.remoteBinary) + " 2>/dev/null || true"
	var out bytes.Buffer
	if err := s.script(ctx, c, op, script, nil, &out); err != nil {
		return "", "", err
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	machine = strings.TrimSpace(lines[0])
	if len(lines) > 1 {
		if f := strings.Fields(lines[1]); len(f) > 0 && len(f[0]) == 64 {
			digest = f[0]
		}
	}
	return digest, machine, nil
}

// upload streams the local binary to a temporary file next to the remote
// binary and, if its sha256 is digest, renames it into place: an agent
// running the old binary keeps it, a broken upload leaves the old one.
func (s *SSH) upload(ctx context.Context, c *sshConn, op, digest string) error {
	f, err := os.Open(s.LocalBinary)
	if err != nil {
		return fmt.Errorf("node %s: cannot read the sentinel binary to push: %w", s.Node.Name, err)
	}
	defer f.Close()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := s.remoteBinary + ".tmp-" + hex.EncodeToString(rnd[:])
	script := fmt.Sprintf(`set -e; tmp=%s; trap 'rm -f "$tmp"' EXIT; mkdir -p %s; cat > "$tmp"; echo "%s  $tmp" | sha256sum -c --status; chmod 0755 "$tmp"; mv -f "$tmp" %s`,
		shellQuote(tmp), shellQuote(path.Dir(s.remoteBinary)), digest, shellQuote(s.remoteBinary))
	return s.script(ctx, c, op, script, f, io.Discard)
}

// script runs a shell script on the node ([sudo -n] sh -c SCRIPT).
func (s *SSH) script(ctx context.Context, c *sshConn, op, script string, stdin io.Reader, stdout io.Writer) error {
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var copyErr error
	stderr, _, err := s.run(ctx, c, s.command("sh", "-c", script), stdin, nil, func(r io.Reader) {
		_, copyErr = io.Copy(stdout, r)
	})
	if err == nil {
		err = copyErr
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return &UnreachableError{Node: s.Node.Name, Op: op, Err: ctx.Err()}
	}
	if e := s.sudoError(stderr); e != nil {
		return e
	}
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		hint := ""
		if strings.Contains(stderr, "Permission denied") && !s.Node.UsesSudo() {
			hint = fmt.Sprintf(" (set sudo: true for the node, or remote_binary to a path %s can write)", s.user)
		}
		return fmt.Errorf("node %s: checking or pushing the sentinel binary %s on %s: %v: %s%s", s.Node.Name, s.remoteBinary, s.addr, err, truncate(strings.TrimSpace(stderr), 500), hint)
	}
	return s.unreachable(op, c, fmt.Errorf("checking or pushing the sentinel binary: %w", err))
}

// checkMachine refuses to push a binary built for another processor.
func (s *SSH) checkMachine(machine string) error {
	f, err := elf.Open(s.LocalBinary)
	if err != nil {
		return fmt.Errorf("node %s: cannot push %s: not a Linux executable (%v): run sentinel from a Linux build for %s", s.Node.Name, s.LocalBinary, err, machine)
	}
	defer f.Close()
	want, known := unameMachines[machine]
	if known && f.Machine != want {
		return fmt.Errorf("node %s: cannot push %s, built for %v, to a %s node: run sentinel from a build for %s", s.Node.Name, s.LocalBinary, f.Machine, machine, machine)
	}
	return nil
}

var unameMachines = map[string]elf.Machine{
	"x86_64":  elf.EM_X86_64,
	"aarch64": elf.EM_AARCH64,
	"arm64":   elf.EM_AARCH64,
	"armv7l":  elf.EM_ARM,
	"armv6l":  elf.EM_ARM,
	"i686":    elf.EM_386,
	"i386":    elf.EM_386,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
}
