package trust

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/sentinel-paas/sentinel/durable"
)

// Store is the trusted state of one channel on one machine: the root it
// trusts and the highest version of each document it has verified.
//
//	<dir>/root.json      the trusted root, byte for byte as published
//	<dir>/versions.json  {"index.json": 7, "releases/3.4.2/manifest.json": 3}
type Store struct{ dir string }

var channelID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// OpenStore returns the store of channel id under stateDir
// (<stateDir>/trust/<id>). The id names the channel for this cluster (its
// name in the index, say), and must be a plain file name.
func OpenStore(stateDir, id string) (*Store, error) {
	if !channelID.MatchString(id) {
		return nil, fmt.Errorf("channel id %q: want letters, digits, '.', '_' or '-'", id)
	}
	return &Store{dir: filepath.Join(stateDir, "trust", id)}, nil
}

// Dir is where the store keeps its files.
func (s *Store) Dir() string { return s.dir }

// load returns a nil root when the store is new.
func (s *Store) load() ([]byte, map[string]int64, error) {
	root, err := os.ReadFile(filepath.Join(s.dir, "root.json"))
	if errors.Is(err, fs.ErrNotExist) {
		root = nil
	} else if err != nil {
		return nil, nil, err
	}
	versions := map[string]int64{}
	path := filepath.Join(s.dir, "versions.json")
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, nil, err
	default:
		if err := decodeStrict(data, &versions); err != nil {
			return nil, nil, &Error{Doc: path, Check: CheckMalformed, Err: fmt.Errorf("%v (this is local trusted state: restore it from a backup; removing it drops rollback protection until the next run)", err)}
		}
		for name, n := range versions {
			if n < 1 {
				return nil, nil, &Error{Doc: path, Check: CheckMalformed, Err: fmt.Errorf("version %d for %q (this is local trusted state: restore it from a backup)", n, name)}
			}
		}
	}
	return root, versions, nil
}

// save writes root (when not nil), then versions, each atomically,
// creating the store's directory if needed.
func (s *Store) save(root []byte, versions map[string]int64) error {
	if root != nil {
		if err := durable.WriteFile(filepath.Join(s.dir, "root.json"), root, 0o644); err != nil {
			return fmt.Errorf("saving the trusted state: %w", err)
		}
	}
	data, err := json.MarshalIndent(versions, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(s.dir, "versions.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("saving the trusted state: %w", err)
	}
	return nil
}
