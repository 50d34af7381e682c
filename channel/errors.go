package channel

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// The checks a refusal names.
const (
	CheckSignature  = "signature"         // too few valid signatures by the role's keys
	CheckUnknownKey = "unknown-key"       // signed only by keys the trusted root does not list for the role
	CheckRotation   = "rotation"          // a new root not signed by the old root's threshold and its own
	CheckExpired    = "expired"           // past its expiry date
	CheckRollback   = "rollback"          // an older version than the one trusted, or not the one announced
	CheckLength     = "length"            // not the signed length
	CheckHash       = "hash"              // not the signed sha256
	CheckTooLarge   = "too-large"         // more bytes than the role may have
	CheckMismatch   = "snapshot-mismatch" // does not match what the snapshot or timestamp announce (mix-and-match)
	CheckNotListed  = "not-listed"        // not a target of the signed targets metadata
	CheckFormat     = "format"            // not TUF metadata of the expected role
)

// Error is channel metadata or a channel document refused: it names the
// document (a role's metadata or a target), the check, and what to do.
// Nothing was changed when it is returned.
type Error struct {
	Doc   string
	Check string
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("channel document %s refused (%s check): %v; %s", e.Doc, e.Check, e.Err, advice(e.Check))
}
func (e *Error) Unwrap() error { return e.Err }

func advice(check string) string {
	switch check {
	case CheckExpired:
		return "the channel's publisher must refresh it (`sentinel channel timestamp` / `publish`); in an air-gapped window only, --allow-expired-metadata accepts it (docs/operator.md: Air-gapped windows)"
	case CheckRollback, CheckMismatch, CheckLength, CheckHash, CheckTooLarge:
		return "the server (upstream, mirror or cache node) serves other bytes than the channel's publisher signed: nothing was installed; point the cluster file's channel at the publisher's repository, or fill the cache node again"
	case CheckNotListed:
		return "the channel's signed targets do not list it: ask the channel's publisher to publish it (`sentinel channel publish`)"
	case CheckRotation:
		return "a new root must be signed by the threshold of the trusted root's keys and by its own: ask the channel's publisher, or install the new root out of band as trust.root after checking it with them"
	}
	return "the metadata is not signed by the keys the trusted root names: check trust.root in the cluster file is the publisher's root, and that the server serves the publisher's repository"
}

// explain turns what go-tuf returns into an *Error naming the document
// and the check, or a *FetchError.
func (c *Client) explain(err error, role string) error {
	if err == nil {
		return nil
	}
	var e *Error
	var fe *FetchError
	if errors.As(err, &e) || errors.As(err, &fe) {
		return err
	}
	doc := role
	if doc == "" {
		doc = c.lastDoc()
	}
	var dh *metadata.ErrDownloadHTTP
	switch {
	case errors.As(err, &dh):
		return &FetchError{URL: dh.URL, Status: dh.StatusCode, Err: fmt.Errorf("HTTP %d", dh.StatusCode)}
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) && announced(doc):
		// Longer than the length the timestamp or snapshot signed for it.
		return &Error{Doc: doc, Check: CheckMismatch, Err: err}
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}):
		return &Error{Doc: doc, Check: CheckTooLarge, Err: err}
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		return &Error{Doc: expiredDoc(err, doc), Check: CheckExpired, Err: err}
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return &Error{Doc: doc, Check: CheckRollback, Err: err}
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return &Error{Doc: doc, Check: CheckMismatch, Err: err}
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return &Error{Doc: doc, Check: c.signatureCheck(doc), Err: err}
	case errors.Is(err, &metadata.ErrRepository{}), errors.Is(err, &metadata.ErrValue{}), errors.Is(err, &metadata.ErrType{}):
		return &Error{Doc: doc, Check: CheckFormat, Err: err}
	}
	return fmt.Errorf("channel %s: %s: %w", c.base, doc, err)
}

// announced says whether a metadata file's length is signed by another
// role: a snapshot's by the timestamp, a targets metadata's by the snapshot.
func announced(doc string) bool {
	return strings.HasSuffix(doc, ".snapshot.json") || strings.HasSuffix(doc, ".targets.json")
}

// lastDoc names the file go-tuf read last: the one it was verifying.
func (c *Client) lastDoc() string {
	u := c.f.last.url
	if u == "" {
		return "metadata"
	}
	return strings.TrimPrefix(u, c.base.String())
}

func expiredDoc(err error, doc string) string {
	msg := err.Error()
	for _, r := range []string{"root", "timestamp", "snapshot", "targets"} {
		if strings.Contains(msg, r) {
			return "metadata/" + r + ".json"
		}
	}
	return doc
}

// signatureCheck tells a rotation not signed by the old root, signatures
// by keys the root does not list at all, and too few signatures.
func (c *Client) signatureCheck(doc string) string {
	if strings.HasSuffix(doc, ".root.json") {
		return CheckRotation
	}
	var m struct {
		Signatures []struct {
			KeyID string `json:"keyid"`
		} `json:"signatures"`
	}
	if json.Unmarshal(c.f.last.data, &m) != nil || c.up == nil {
		return CheckSignature
	}
	root := c.up.GetTrustedMetadataSet().Root
	if root == nil {
		return CheckSignature
	}
	role := strings.TrimSuffix(path.Base(doc), ".json")
	if i := strings.LastIndex(role, "."); i >= 0 {
		role = role[i+1:]
	}
	r, ok := root.Signed.Roles[role]
	if !ok {
		return CheckSignature
	}
	for _, s := range m.Signatures {
		for _, k := range r.KeyIDs {
			if k == s.KeyID {
				return CheckSignature
			}
		}
	}
	return CheckUnknownKey
}
