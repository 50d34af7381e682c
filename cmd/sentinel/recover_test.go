package main

import (
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/lifecycle"
)

// The log's command lines read back as they were run, and a logged
// command becomes the resume command of its kind with the options a
// resume takes.
func TestRecoverCommandLines(t *testing.T) {
	for _, argv := range [][]string{
		{"/usr/local/bin/sentinel", "upgrade", "3.4.2", "--yes"},
		{"/opt/my sentinel/sentinel", "upgrade", "--cache-ip", "10.0.0.1:9077", "--role-order", "router,dea"},
		{"sentinel", "patch", "install", "it's", "a\\b", "$x", ""},
	} {
		got, err := lifecycle.SplitCommandLine(lifecycle.CommandLine(argv))
		if err != nil || strings.Join(got, "\x00") != strings.Join(argv, "\x00") {
			t.Errorf("round trip of %q: %q, %v", argv, got, err)
		}
	}
	if _, err := lifecycle.SplitCommandLine("sentinel 'unterminated"); err == nil {
		t.Error("an unterminated quote was accepted")
	}

	for _, tc := range []struct {
		argv []string
		kind string
		args string
	}{
		{[]string{"s", "upgrade", "3.4.2", "--yes", "--cache-ip", "10.0.0.1", "--max-in-flight=2", "--node", "dea-1", "--skip-drain", "--cluster", "old.yaml"},
			"upgrade", "upgrade --resume --cluster /c.yaml --cache-ip 10.0.0.1 --max-in-flight=2 --skip-drain"},
		{[]string{"s", "upgrade", "--resume", "--no-cache", "-o", "json"}, "upgrade", "upgrade --resume --cluster /c.yaml --no-cache -o json"},
		{[]string{"s", "patch", "install", "aok-fix", "--cache-ip", "h", "--node", "core", "--yes"}, "patch install", "patch install --resume --cluster /c.yaml --cache-ip h"},
		{[]string{"s", "patch", "reinstall", "aok-fix"}, "patch install", "patch install --resume --cluster /c.yaml"},
		{[]string{"s", "patch", "revert", "aok-fix"}, "patch revert", "patch revert --resume --cluster /c.yaml"},
		{[]string{"s", "upgrade", "--update-self"}, "", ""},
		{[]string{"s", "upgrade", "3.4.2", "--update-self", "--yes"}, "upgrade", "upgrade --resume --cluster /c.yaml"},
		{[]string{"s", "upgrade", "3.4.2", "--dry-run"}, "", ""},
		{[]string{"s", "upgrade", "3.4.2", "--download-only", "--cache-ip", "h"}, "", ""},
		{[]string{"s", "patch", "status"}, "", ""},
		{[]string{"s", "preflight", "3.4.2"}, "", ""},
	} {
		if got, _ := kindOf(tc.argv); got != tc.kind {
			t.Errorf("kind of %q: %q, want %q", tc.argv, got, tc.kind)
			continue
		}
		if tc.kind == "" {
			continue
		}
		if got := strings.Join(resumeArgs(tc.kind, tc.argv, "/c.yaml"), " "); got != tc.args {
			t.Errorf("resume of %q:\n got %s\nwant %s", tc.argv, got, tc.args)
		}
	}
}
