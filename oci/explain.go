package oci

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// ReachError is a registry that answered in a way sentinel cannot use
// (its certificate, plain HTTP, credentials, rights): what happened, in
// the operator's terms, and what to do. Err is the cause.
type ReachError struct {
	Host, Repo string
	What, Do   string
	Err        error
}

func (e *ReachError) Error() string {
	return fmt.Sprintf("the registry %s %s: %s", e.Host, e.What, e.Do)
}
func (e *ReachError) Unwrap() error { return e.Err }

// Advised: the error says what to do (a reader adds no advice of its own).
func (e *ReachError) Advised() bool { return true }

// explain turns what reaching the registry at ref with a failed into a
// *ReachError where the cause is the operator's to fix; other errors
// (a registry that does not answer) stay as they are, without the
// repeated `Get "URL":` of nested HTTP clients.
func explain(err error, ref Ref, a Access) error {
	if err == nil {
		return nil
	}
	var re *ReachError
	if errors.As(err, &re) {
		return err
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var er *errcode.ErrorResponse
	e := &ReachError{Host: ref.Host, Repo: ref.Repo, Err: err}
	switch {
	case errors.As(err, &ua):
		e.What = "presents a certificate not signed by a CA sentinel trusts (" + ua.Error() + ")"
		e.Do = "give the CA that signed it with " + a.From.name("--registry-ca FILE", "registry_ca")
		if a.CAPEM != "" {
			e.Do = "the CA given with --registry-ca" + orClusterFile(a.From, "registry_ca") + " did not sign it: give the one that did"
		}
	case errors.As(err, &hn):
		e.What = "presents a certificate for another name (" + hn.Error() + ")"
		e.Do = "reach it by a name or address its certificate names, or have its certificate reissued"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		e.What = "answers plain HTTP"
		e.Do = "sentinel reaches registries over HTTPS only: serve it with TLS (and give its CA with " + a.From.name("--registry-ca FILE", "registry_ca") + ")"
	case errors.Is(err, auth.ErrBasicCredentialNotFound), errors.As(err, &er) && er.StatusCode == http.StatusUnauthorized:
		e.What = "asks for credentials (HTTP 401 unauthorized)"
		e.Do = "give them with " + a.From.name("--registry-auth FILE", "registry_auth") + ": a Docker config.json with an entry for " + ref.Host
		if a.Username != "" || a.Token != "" {
			e.What = "refused the credentials given for it (HTTP 401 unauthorized)"
			e.Do = "check the entry for " + ref.Host + " in the file given with --registry-auth" + orClusterFile(a.From, "registry_auth")
		}
	case errors.As(err, &er) && er.StatusCode == http.StatusForbidden:
		e.What = "denied access to " + ref.Repo + " (HTTP 403 forbidden)"
		e.Do = "the credentials for " + ref.Host + " in the file given with --registry-auth" + orClusterFile(a.From, "registry_auth") + " lack the rights this needs on " + ref.Repo + " (push, or pull): grant them in the registry"
	default:
		return bare(err)
	}
	return e
}

// orClusterFile names the cluster file's key after a flag, mid-sentence,
// where the command reads a cluster file.
func orClusterFile(f SettingsFrom, key string) string {
	if f == FlagsOnly {
		return ""
	}
	return " (or " + key + " in the cluster file)"
}

// bare strips the nested `Get "URL":` of HTTP clients wrapping each other.
func bare(err error) error {
	for {
		ue, ok := err.(*url.Error) // only the outer ones: a cause below keeps its own
		if !ok {
			return err
		}
		err = ue.Err
	}
}
