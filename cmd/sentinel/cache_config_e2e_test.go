package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// `sentinel cache serve --config`: a bad configuration stops it with exit 2
// naming the file and the setting; a flag beside --config is refused; a
// good one serves.
func TestCacheServeConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Mkdir(filepath.Join(dir, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown setting", []string{"--config", write("typo.yaml", "cache_dir: cache\nplain_http: true\nlisten: 127.0.0.1:0\ntoken_fle: t\n")}, "typo.yaml: token_fle: line 4: unknown setting"},
		{"no TLS", []string{"--config", write("notls.yaml", "cache_dir: cache\n")}, "notls.yaml: tls_cert_file: required"},
		{"missing certificate", []string{"--config", write("nocert.yaml", "cache_dir: cache\ntls_cert_file: no.crt\ntls_key_file: no.key\nlisten: 127.0.0.1:0\n")}, "nocert.yaml: tls_cert_file: the TLS certificate"},
		{"missing cache_dir", []string{"--config", write("nodir.yaml", "cache_dir: gone\nplain_http: true\nlisten: 127.0.0.1:0\n")}, "cache_dir: " + filepath.Join(dir, "gone") + " is not a directory"},
		{"flag and config", []string{"--config", write("ok.yaml", "cache_dir: cache\nplain_http: true\nlisten: 127.0.0.1:0\n"), "--listen", "127.0.0.1:0"}, "--listen and --config"},
		{"no TLS by flags", []string{"--dir", filepath.Join(dir, "cache"), "--listen", "127.0.0.1:0"}, "plain_http: true (--plain-http)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(sentinelBin, append([]string{"cache", "serve"}, tc.args...)...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Errorf("%v: %s; want exit 2 saying %q", err, out, tc.want)
			}
		})
	}

	cmd := exec.Command(sentinelBin, "cache", "serve", "--config", filepath.Join(dir, "ok.yaml"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || !strings.HasPrefix(line, "listening on 127.0.0.1:") {
		t.Errorf("a good configuration: %q, %v", line, err)
	}
}
