// Package trust decides whether a channel's metadata may be installed:
// signed by the publisher's keys, not expired, not older than what this
// machine already trusted. It is a small scheme in the spirit of TUF.
//
// # Files a channel publishes
//
//	root.json, 1.root.json, 2.root.json, ...   the key set: ed25519 public keys (id = hex sha256 of
//	                                            the key), a threshold, a version, an expiry
//	index.json + index.json.sig                 every other document keeps its bytes; its
//	releases/3.4.2/manifest.json + .sig         detached .sig sidecar signs them
//
// root.json and every .sig are {"signed": {...}, "signatures": [{"keyid", "sig"}]}.
// A sidecar's signed part is
//
//	{"expires":RFC3339,"length":L,"name":"<path relative to the channel>","sha256":"…","type":"sentinel-signed","version":N}
//
// and a root's is {"expires","keys":{id:{"public","type":"ed25519"}},"threshold","type":"sentinel-root","version"}.
// Signatures (hex ed25519) cover the canonical encoding of the signed part:
// keys sorted, no whitespace. Verifiers re-encode what they parsed, so what
// they act on is exactly what was signed, whatever the layout on the wire.
//
// # Checks, in order (Error.Check names the one that refused)
//
// too-large (a document over 16 MiB, a sidecar or root over 1 MiB);
// signature, unknown-key, threshold (at least root.threshold distinct keys
// of the trusted root must sign; a key counts once however often it signs;
// signatures by unlisted keys are ignored once the threshold is met);
// malformed; name (the sidecar is for the document at this path, so a
// mirror cannot serve 3.4.1's manifest as 3.4.2's); length and digest of the
// document's bytes; expired (the document's, and the trusted root's:
// Options.AllowExpired accepts them and reports each one in Meta so the
// caller logs it); rollback (a version lower than the trusted one; equal is
// fine, as every run re-reads the same documents).
//
// # Rotation
//
// Root version n+1 replaces version n only when signed by a threshold of
// version n's keys and by a threshold of its own (check "rotation").
// A node several versions behind walks n+1.root.json, n+2.root.json, ...
// until the channel has no next one (Verifier.UpdateRoots). Intermediate
// roots may have expired; the root that ends up trusted may not.
//
// # Trusted state
//
// Store keeps, per channel, <state_dir>/trust/<channel-id>/root.json and
// versions.json (name → highest verified version), each written atomically.
// The first trust comes from a root file the operator installs (the trust
// anchor), never from the channel: a channel cannot vouch for itself.
// Once a store holds a root, an anchor of the same or a lower version is
// ignored; an anchor of a higher version replaces the stored root (the
// operator's out-of-band word: new keys after a compromise, or a rotation
// a mirror withheld), keeping the trusted document versions.
//
// # How to wire it into the channel reader
//
// release.WithTrust does the following for release.OpenChannel, and
// cmd/sentinel (trust.go) builds the verifier from the cluster file's
// trust.root and commits it once the plan is read:
//
//	st, _ := trust.OpenStore(stateDir, channelID)
//	v, err := trust.NewVerifier(st, anchorBytes, trust.Options{AllowExpired: flag, Now: clock})
//	err = v.UpdateRoots(func(name string) ([]byte, bool, error) { /* GET name; 404 → false */ })
//	for each document (index.json first, then what it names):
//	    meta, err := v.Verify("releases/3.4.2/manifest.json", doc, sig) // sig nil when 404
//	    if meta.Expired || meta.RootExpired { log it: accepted only because of --allow-expired-metadata }
//	    parse doc only after Verify succeeded
//	err = v.Commit() // before acting on what was read: later runs refuse anything older
//
// Artifacts are covered by the verified manifest's size and sha256;
// CheckArtifact reports a mismatch as the same *Error. A cache daemon
// serves documents and their .sig files unchanged: nodes verify themselves,
// so a compromised cache node can withhold documents, not forge them.
package trust
