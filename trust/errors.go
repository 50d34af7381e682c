package trust

import "fmt"

// Check names are stable: scripts and the channel reader match on them.
const (
	CheckSignature  = "signature"   // a signature by a trusted key does not verify, or there is none
	CheckThreshold  = "threshold"   // valid signatures, but fewer than the root requires
	CheckUnknownKey = "unknown-key" // signed only by keys the trusted root does not list
	CheckExpired    = "expired"
	CheckRollback   = "rollback"  // a version lower than the trusted one
	CheckDigest     = "digest"    // sha256 differs from the signed one
	CheckLength     = "length"    // size differs from the signed one
	CheckTooLarge   = "too-large" // larger than any sane metadata document
	CheckMalformed  = "malformed"
	CheckName       = "name"     // signed for another document
	CheckRotation   = "rotation" // a new root that does not follow from the trusted one
)

// Error is a refusal: which document, which check, and why. Its message
// also says what an operator can do about it.
type Error struct {
	Doc   string // path relative to the channel ("index.json"), or a local file
	Check string // one of the Check constants
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s check failed: %v; %s", e.Doc, e.Check, e.Err, advice[e.Check])
}

func (e *Error) Unwrap() error { return e.Err }

var advice = map[string]string{
	CheckSignature:  "the .sig is missing, or the document or its .sig is not what the publisher signed: do not install from this mirror; fetch the channel again from the publisher or another mirror",
	CheckThreshold:  "the channel is not signed by enough trusted keys: ask the publisher to add the missing signatures",
	CheckUnknownKey: "if the publisher rotated its keys, the channel must publish the new root signed by the old keys (<version>.root.json); otherwise the mirror is not the publisher's",
	CheckExpired:    "the channel's metadata is stale; ask the publisher to re-sign, or pass --allow-expired-metadata if you knowingly run an air-gapped mirror",
	CheckRollback:   "the mirror serves older metadata than this node already trusted (a stale or replayed mirror): use an up-to-date mirror",
	CheckDigest:     "the bytes are not the ones the publisher signed (a damaged download or a tampered mirror): fetch again, or from another mirror",
	CheckLength:     "the bytes are not the ones the publisher signed (a truncated download or a tampered mirror): fetch again, or from another mirror",
	CheckTooLarge:   "no genuine metadata document is that large: the mirror is broken or hostile",
	CheckMalformed:  "the file is not a valid sentinel signature document: ask the publisher to re-sign with `sentinel release sign`",
	CheckName:       "the mirror serves a signed document under another document's name: use a mirror that serves the channel unchanged",
	CheckRotation:   "a new root is trusted only when signed by the currently trusted keys and its own, with the next version number; if the publisher's keys were lost, install the new root by hand as the trust anchor after checking it out of band",
}

func refuse(doc, check string, format string, args ...any) *Error {
	return &Error{Doc: doc, Check: check, Err: fmt.Errorf(format, args...)}
}
