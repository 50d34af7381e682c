package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the cache daemon's configuration file (sentinel-d.yaml), the
// one source of truth for the daemon: where it keeps artifacts, where it
// listens and how (TLS), its token, where it fills from. The cluster file
// only says how to reach and verify it.
type Config struct {
	// CacheDir is the store (the product's cache_dir setting).
	CacheDir string `yaml:"cache_dir"`
	// ChannelDir holds the channel documents; "" is CacheDir/channel.
	ChannelDir string `yaml:"channel_dir"`
	// Listen is host:port; "" is :DefaultListenPort.
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile are PEM files, re-read when they change.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// PlainHTTP serves without TLS. It must be said explicitly: the
	// daemon then warns at start, on /readyz and as requests come.
	PlainHTTP bool `yaml:"plain_http"`
	// TokenFile holds the prefetch API's bearer token, re-read when it
	// changes; "" disables prefetch.
	TokenFile string `yaml:"token_file"`
	// Upstream is the channel URL missing artifacts are pulled from; ""
	// is air-gapped.
	Upstream string `yaml:"upstream"`
	// Proxy is the HTTP proxy for the daemon's own upstream fetches; ""
	// takes http_proxy, https_proxy and no_proxy from the environment.
	Proxy string `yaml:"proxy"`
	// TrustRoot is the channel's root of trust (anchor file), installed
	// out of band.
	TrustRoot string `yaml:"trust_root"`
	// LogFile receives the JSON log, rotated; "" is stderr (journald).
	LogFile string `yaml:"log_file"`
	// NoProgressTimeout cuts a client that reads nothing of a response for
	// this long; a slow but steady client is never cut. 0: 60s.
	NoProgressTimeout time.Duration `yaml:"no_progress_timeout"`
	// IdleTimeout closes a keep-alive connection idle for this long. 0: 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ReadHeaderTimeout bounds the time to send a request's headers. 0: 30s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// MaxConnsPerClient bounds the open connections of one client address;
	// more are answered 429 and closed. 0: 64.
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
	// MinFreeDiskMiB: below this much free space under CacheDir, /readyz
	// says the disk is full. 0: 1024.
	MinFreeDiskMiB int64 `yaml:"min_free_disk_mib"`

	// file is where LoadConfig read it, for errors found later.
	file string
}

// Defaults of the daemon's configuration.
const (
	DefaultListenPort        = 9077
	DefaultNoProgressTimeout = 60 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultReadHeaderTimeout = 30 * time.Second
	DefaultMaxConnsPerClient = 64
	DefaultMinFreeDiskMiB    = 1024

	// MaxConfigBytes bounds the configuration file: a real one is a few
	// hundred bytes.
	MaxConfigBytes = 64 << 10
)

// ConfigError is a configuration the daemon refuses: the file, the field
// and what is wrong. Nothing was started.
type ConfigError struct {
	File  string // "" for settings from the command line
	Field string // "" when the file as a whole is wrong
	Msg   string
}

func (e *ConfigError) Error() string {
	where := "cache daemon configuration"
	if e.File != "" {
		where = e.File
	}
	if e.Field != "" {
		where += ": " + e.Field
	}
	return where + ": " + e.Msg
}

// LoadConfig reads and checks a configuration file (ReadConfig, then
// Check): what the daemon needs. Defaults are filled in.
func LoadConfig(path string) (Config, error) {
	c, err := ReadConfig(path)
	if err != nil {
		return c, err
	}
	if err := c.Check(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = path
		}
		return c, err
	}
	return c, nil
}

// ReadConfig reads a configuration file without checking the daemon's
// settings: for the commands that only need its cache_dir and
// channel_dir. YAML, unknown fields refused, at most MaxConfigBytes;
// relative paths are taken from the file's directory.
func ReadConfig(path string) (Config, error) {
	var c Config
	f, err := os.Open(path)
	if err != nil {
		return c, &ConfigError{File: path, Msg: fmt.Sprintf("cannot read it: %v", errors.Unwrap(err))}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return c, &ConfigError{File: path, Msg: fmt.Sprintf("cannot read it: %v", err)}
	}
	if len(data) > MaxConfigBytes {
		return c, &ConfigError{File: path, Msg: fmt.Sprintf("larger than %d bytes: not a configuration file", MaxConfigBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && err != io.EOF {
		return c, yamlConfigError(path, err)
	}
	c.file = path
	dir := filepath.Dir(path)
	for _, p := range []*string{&c.CacheDir, &c.ChannelDir, &c.TLSCertFile, &c.TLSKeyFile, &c.TokenFile, &c.TrustRoot, &c.LogFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return c, nil
}

var yamlFieldError = regexp.MustCompile(`line (\d+): field (\S+) not found`)

// yamlConfigError names the field yaml.v3 complains about.
func yamlConfigError(path string, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	if m := yamlFieldError.FindStringSubmatch(msg); m != nil {
		return &ConfigError{File: path, Field: m[2], Msg: fmt.Sprintf("line %s: unknown setting (settings: %s)", m[1], strings.Join(configFields(), ", "))}
	}
	return &ConfigError{File: path, Msg: msg}
}

func configFields() []string {
	return []string{"cache_dir", "channel_dir", "listen", "tls_cert_file", "tls_key_file", "plain_http", "token_file",
		"upstream", "proxy", "trust_root", "log_file", "no_progress_timeout", "idle_timeout", "read_header_timeout",
		"max_conns_per_client", "min_free_disk_mib"}
}

// Check validates the settings and fills in the defaults. A ConfigError
// names the field.
func (c *Config) Check() error {
	bad := func(field, format string, args ...any) error {
		return c.fieldError(field, fmt.Sprintf(format, args...))
	}
	if c.CacheDir == "" {
		return bad("cache_dir", "required: the directory that holds the artifacts")
	}
	abs, err := filepath.Abs(c.CacheDir)
	if err != nil {
		return bad("cache_dir", "%v", err)
	}
	c.CacheDir = abs
	if c.ChannelDir == "" {
		c.ChannelDir = filepath.Join(c.CacheDir, "channel")
	}
	if c.Listen == "" {
		c.Listen = ":" + strconv.Itoa(DefaultListenPort)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return bad("listen", "%q is not host:port (for all addresses: \":%d\")", c.Listen, DefaultListenPort)
	}
	if err := c.checkTLS(); err != nil {
		return err
	}
	for _, u := range []struct{ field, value string }{{"upstream", c.Upstream}, {"proxy", c.Proxy}} {
		if u.value == "" {
			continue
		}
		p, err := url.Parse(u.value)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return bad(u.field, "%q is not an http:// or https:// URL", u.value)
		}
	}
	for _, d := range []struct {
		field string
		v     *time.Duration
		def   time.Duration
	}{{"no_progress_timeout", &c.NoProgressTimeout, DefaultNoProgressTimeout}, {"idle_timeout", &c.IdleTimeout, DefaultIdleTimeout}, {"read_header_timeout", &c.ReadHeaderTimeout, DefaultReadHeaderTimeout}} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0 || *d.v > 24*time.Hour:
			return bad(d.field, "%s is out of bounds (between 1ms and 24h, e.g. %s)", *d.v, d.def)
		}
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = DefaultMaxConnsPerClient
	} else if c.MaxConnsPerClient < 0 || c.MaxConnsPerClient > 1<<16 {
		return bad("max_conns_per_client", "%d is out of bounds (1 to 65536)", c.MaxConnsPerClient)
	}
	if c.MinFreeDiskMiB == 0 {
		c.MinFreeDiskMiB = DefaultMinFreeDiskMiB
	} else if c.MinFreeDiskMiB < 0 {
		return bad("min_free_disk_mib", "negative")
	}
	return nil
}

func (c *Config) checkTLS() error {
	switch {
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		field := "tls_key_file"
		if c.TLSCertFile == "" {
			field = "tls_cert_file"
		}
		return c.fieldError(field, "tls_cert_file and tls_key_file go together")
	case c.TLSCertFile != "" && c.PlainHTTP:
		return c.fieldError("plain_http", "set together with tls_cert_file: say one or the other")
	case c.TLSCertFile == "" && !c.PlainHTTP:
		return c.fieldError("tls_cert_file", "required: the daemon speaks TLS (make a certificate with `sentinel cache cert --ip ADDRESS --out-dir DIR`); "+
			"to serve plain HTTP anyway, where the token and the nodes' traffic cross the network in clear, say plain_http: true (--plain-http)")
	}
	return nil
}

// TLS reports whether the daemon serves TLS.
func (c *Config) TLS() bool { return c.TLSCertFile != "" }

// fieldError is a ConfigError about one setting, naming the file the
// configuration came from.
func (c *Config) fieldError(field, msg string) error {
	return &ConfigError{File: c.file, Field: field, Msg: msg}
}
