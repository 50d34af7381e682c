package oci

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// Access is how one registry is reached: the CA its certificate is checked
// against and the credentials to send. The orchestrator sends it with
// each fetch from the registry, as it sends the cache daemon's pin, so a
// node reaches the registry as the orchestrator does; it is never written
// to the journal.
type Access struct {
	// CAPEM: the registry's CA (PEM); empty: the system's roots.
	CAPEM string `json:"ca_pem,omitempty"`
	// Username and Password: basic credentials, also used for the bearer
	// token flow (a registry behind a token service).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Token: an identity (refresh) token, for registries that issue them.
	Token string `json:"token,omitempty"`
	// PlainHTTP: the registry speaks HTTP (only for a loopback lab).
	PlainHTTP bool `json:"plain_http,omitempty"`
	// From: where the operator gives the CA and credentials, for advice.
	From SettingsFrom `json:"-"`
}

// SettingsFrom says where the operator gives registry settings, so that
// advice names what the command reads and nothing else.
type SettingsFrom int

const (
	// FlagsOrClusterFile: a run, whose flags replace the cluster file's.
	FlagsOrClusterFile SettingsFrom = iota
	// FlagsOnly: a command that reads no cluster file (channel push, copy,
	// verify).
	FlagsOnly
)

// name is how advice names a setting: flag (a flag, maybe with its
// argument), and for a run the cluster file's key as well.
func (f SettingsFrom) name(flag, key string) string {
	if f == FlagsOnly {
		return flag
	}
	return flag + ", or " + key + " in the cluster file"
}

// Settings are the operator's registry settings (cluster file or flags).
type Settings struct {
	// CAFile: the registries' CA, PEM ("" : the system's roots).
	CAFile string
	// AuthFile: a Docker config.json ({"auths": {"HOST:PORT": {"auth":
	// base64(user:password)}}}) with each registry's credentials.
	AuthFile string
	// From: where they were given (the zero value: a run's flags or
	// cluster file).
	From SettingsFrom
}

// ForHost gives the access to the registry at host (HOST[:PORT]).
func (s Settings) ForHost(ctx context.Context, host string) (Access, error) {
	a := Access{From: s.From}
	ca, auth := s.From.name("--registry-ca", "registry_ca"), s.From.name("--registry-auth", "registry_auth")
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return a, &SettingsError{Msg: fmt.Sprintf("the registry CA file (%s): %v", ca, err)}
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return a, &SettingsError{Msg: fmt.Sprintf("the registry CA file %s (%s) holds no PEM certificate", s.CAFile, ca)}
		}
		a.CAPEM = string(pem)
	}
	if s.AuthFile != "" {
		if _, err := os.Stat(s.AuthFile); err != nil {
			return a, &SettingsError{Msg: fmt.Sprintf("the registry auth file (%s): %v", auth, err)}
		}
		store, err := credentials.NewFileStore(s.AuthFile)
		if err != nil {
			return a, &SettingsError{Msg: fmt.Sprintf("the registry auth file %s: %v (want a Docker config.json with \"auths\")", s.AuthFile, err)}
		}
		cred, err := store.Get(ctx, host)
		if err != nil {
			return a, &SettingsError{Msg: fmt.Sprintf("the registry auth file %s, entry %s: %v", s.AuthFile, host, err)}
		}
		a.Username, a.Password, a.Token = cred.Username, cred.Password, cred.RefreshToken
	}
	return a, nil
}

// SettingsError: registry settings that cannot be used (bad input).
type SettingsError struct{ Msg string }

func (e *SettingsError) Error() string { return e.Msg }

// Scheme is the protocol the registry speaks.
func (a Access) Scheme() string {
	if a.PlainHTTP {
		return "http"
	}
	return "https"
}

// AuthClient is oras-go's client for the registry at host: TLS checked
// against the CA, basic credentials or the bearer token flow as the
// registry's challenge asks. Slow registries fail in seconds, not minutes;
// no proxy: registries are the operator's own.
func (a Access) AuthClient(host string) (*auth.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = 60 * time.Second
	if a.CAPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(a.CAPEM)) {
			return nil, errors.New("the registry CA holds no PEM certificate")
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c := &auth.Client{Client: &http.Client{Transport: t}, Cache: auth.NewCache()}
	c.SetUserAgent("sentinel")
	if a.Username != "" || a.Token != "" {
		c.Credential = auth.StaticCredential(host, auth.Credential{Username: a.Username, Password: a.Password, RefreshToken: a.Token})
	}
	return c, nil
}

// HTTPClient reads the registry at host with sentinel's own transfer: each
// request goes through the auth client (which answers the registry's
// challenge), ranges and all.
func (a Access) HTTPClient(host string) (*http.Client, error) {
	ac, err := a.AuthClient(host)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: authTransport{ac}}, nil
}

type authTransport struct{ c *auth.Client }

func (t authTransport) RoundTrip(req *http.Request) (*http.Response, error) { return t.c.Do(req) }

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// auth client's transport: an agent that lives for many steps closes what
// each step opened.
func (t authTransport) CloseIdleConnections() {
	if t.c.Client != nil {
		t.c.Client.CloseIdleConnections()
	}
}
