//go:build !darwin && !windows

package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

func readManaged(p Paths) (Managed, error) {
	m := Managed{Source: p.ManagedFile}
	if p.ManagedFile == "" {
		return m, nil
	}
	b, err := os.ReadFile(p.ManagedFile)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("managed settings: %w", err)
	}
	if err := CheckSettingsFile(p.ManagedFile); err != nil {
		return m, fmt.Errorf("managed settings: %w", err)
	}
	if err := json.Unmarshal(b, &m.Settings); err != nil {
		return m, fmt.Errorf("managed settings %s: not a JSON object: %w", p.ManagedFile, err)
	}
	return m, nil
}
