package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"

	"gopkg.in/natefinch/lumberjack.v2"
)

// httpServer is Serve's http.Server: the handler behind the access log,
// the per-client connection limit and the no-progress deadline; idle and
// header timeouts; TLS when configured.
func (s *Server) httpServer() *http.Server {
	cfg := s.cfg
	timeout := orDefault(cfg.NoProgressTimeout, DefaultNoProgressTimeout)
	var h http.Handler = withProgressDeadline(s.Handler(), timeout)
	hs := &http.Server{
		ReadHeaderTimeout: orDefault(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		ErrorLog:          log.New(serverLogWriter(s.logf), "cache: http: ", 0),
		TLSConfig:         cfg.TLS,
	}
	if cfg.MaxConnsPerClient > 0 {
		l := newClientLimiter(cfg.MaxConnsPerClient, s.logf)
		h = l.handler(h)
		hs.ConnContext, hs.ConnState = l.connContext, l.connState
	}
	if cfg.AccessLog != nil {
		a := &accessLog{log: cfg.AccessLog, plainHTTP: cfg.PlainHTTP}
		h = a.handler(h)
	}
	hs.Handler = h
	return hs
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// DaemonLogger is the daemon's structured log: JSON lines to the log file
// (rotated) if one is configured, else to w (stderr, which journald
// keeps). Close it at exit.
func DaemonLogger(c Config, w io.Writer) (*slog.Logger, io.Closer, error) {
	var out io.Writer = w
	var closer io.Closer = io.NopCloser(nil)
	if c.LogFile != "" {
		f, err := os.OpenFile(c.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, c.fieldError("log_file", fmt.Sprintf("cannot write it: %v", errors.Unwrap(err)))
		}
		f.Close()
		lj := &lumberjack.Logger{Filename: c.LogFile, MaxSize: 100, MaxBackups: 5}
		out, closer = lj, lj
	}
	return slog.New(slog.NewJSONHandler(out, nil)), closer, nil
}

// NewDaemon builds the cache daemon from its configuration: the store, the
// certificate and token (reloaded when their files change), the upstream
// and its proxy. Run it with Serve(ctx, c.Listen, ...). It refuses a
// configuration whose files cannot be read.
func NewDaemon(c Config, logger *slog.Logger) (*Server, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) }
	if err := checkCacheDir(c.CacheDir); err != nil {
		return nil, c.fieldError("cache_dir", err.Error())
	}
	if err := os.MkdirAll(c.ChannelDir, 0o755); err != nil {
		return nil, c.fieldError("channel_dir", err.Error())
	}
	store := &Store{Dir: c.CacheDir}
	var proxy *url.URL
	if c.Proxy != "" { // else the environment's, as curl reads it
		proxy, _ = url.Parse(c.Proxy) // checked by Check
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = http.ProxyURL(proxy)
		store.HTTP = &http.Client{Transport: t}
	}
	sc := ServerConfig{
		Store: store, ChannelDir: c.ChannelDir, Upstream: c.Upstream, Log: logf, Proxy: proxy,
		PlainHTTP: c.PlainHTTP, NoProgressTimeout: c.NoProgressTimeout, IdleTimeout: c.IdleTimeout,
		ReadHeaderTimeout: c.ReadHeaderTimeout, MaxConnsPerClient: c.MaxConnsPerClient,
		MinFreeDisk: uint64(c.MinFreeDiskMiB) << 20, AccessLog: logger,
	}
	if c.TrustRoot != "" {
		if c.Upstream == "" {
			return nil, c.fieldError("trust_root", "needs upstream: the channel the daemon fetches from by name, verified from this root")
		}
		root, err := os.ReadFile(c.TrustRoot)
		if err != nil {
			return nil, c.fieldError("trust_root", err.Error())
		}
		sc.Root = root
	}
	var certs *certFiles
	if c.TLS() {
		var err error
		if certs, err = loadCertFiles(c.TLSCertFile, c.TLSKeyFile, logf); err != nil {
			return nil, c.fieldError("tls_cert_file", err.Error())
		}
		sc.TLS = certs.tlsConfig()
	}
	var tokens *tokenFile
	if c.TokenFile != "" {
		var err error
		if tokens, err = loadTokenFile(c.TokenFile, logf); err != nil {
			return nil, c.fieldError("token_file", err.Error())
		}
	}
	s, err := NewServer(sc)
	if err != nil {
		return nil, c.fieldError("", err.Error())
	}
	s.certs, s.tokens = certs, tokens
	return s, nil
}

// checkCacheDir refuses a cache directory that is missing or that this
// process cannot write, saying what to do (under systemd's ProtectSystem,
// a directory outside the unit's ReadWritePaths is read-only).
func checkCacheDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is not a directory: create it, owned by the user the daemon runs as", dir)
	}
	if err := probeStore(dir); err != nil {
		return fmt.Errorf("%s: %v. Make it owned by the daemon's user (uid %d); under systemd, also let the unit write it: "+
			"`sudo sentinel cache dropin --config FILE && sudo systemctl daemon-reload`, then restart the service", dir, err, os.Getuid())
	}
	return nil
}

// ServeDaemon runs s on listen until ctx ends, logging the start (and the
// plain-HTTP warning), and calling ready with the bound address.
func ServeDaemon(ctx context.Context, s *Server, c Config, logger *slog.Logger, ready func(net.Addr)) error {
	return s.Serve(ctx, c.Listen, func(a net.Addr) {
		attrs := []any{slog.String("addr", a.String()), slog.String("cache_dir", c.CacheDir), slog.Bool("tls", c.TLS())}
		if s.certs != nil {
			cert, leaf := s.certs.current()
			attrs = append(attrs, slog.String("fingerprint", CertFingerprint(cert.Certificate[0])), slog.Time("cert_not_after", leaf.NotAfter))
		}
		logger.Info("listening", attrs...)
		if c.PlainHTTP {
			logger.Warn(PlainHTTPWarning)
		}
		if ready != nil {
			ready(a)
		}
	})
}

// token is the prefetch token in use: the token file's current content, or
// ServerConfig.Token.
func (s *Server) token() string {
	if s.tokens != nil {
		return s.tokens.Token()
	}
	return s.cfg.Token
}
