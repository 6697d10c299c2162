package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"sort"
	"strings"

	"howett.net/plist"
)

// ManagedPreferenceDomain is the macOS preference domain of certagent's
// managed settings. An MDM profile with a custom-settings payload for this
// domain (PayloadType dev.certagent.agent) lands in
// /Library/Managed Preferences/dev.certagent.agent.plist, which the agent
// reads. Its keys are the config file's keys.
const ManagedPreferenceDomain = "dev.certagent.agent"

// ManagedPreferencesFile is where macOS puts the device-wide managed
// preferences of ManagedPreferenceDomain.
const ManagedPreferencesFile = "/Library/Managed Preferences/" + ManagedPreferenceDomain + ".plist"

// ManagedRegistryKey is the Windows policy key (GPO, Intune ADMX, the MSI's
// properties) whose values are certagent's managed settings. Value names
// are the config keys (case-insensitive); REG_SZ and REG_EXPAND_SZ become
// strings (the latter expanded), REG_DWORD and REG_QWORD numbers (the agent
// reads 0/1 as booleans and numbers as seconds where it wants them), and
// REG_MULTI_SZ lists (stores, retired_fingerprints).
const ManagedRegistryKey = `HKLM\SOFTWARE\Policies\certagent`

// readManagedFile reads an explicitly configured managed-settings file: a
// property list when its name ends in .plist, JSON otherwise. A missing
// file is nothing managed.
func readManagedFile(path string) (Managed, error) {
	m := Managed{Source: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("managed settings: %w", err)
	}
	if err := CheckSettingsFile(path); err != nil {
		return m, fmt.Errorf("managed settings: %w", err)
	}
	if strings.HasSuffix(path, ".plist") {
		m.Settings, err = decodeManagedPlist(b)
		if err != nil {
			return m, fmt.Errorf("managed settings %s: %w", path, err)
		}
		return m, nil
	}
	if err := json.Unmarshal(b, &m.Settings); err != nil {
		return m, fmt.Errorf("managed settings %s: not a JSON object: %w", path, err)
	}
	return m, nil
}

// decodeManagedPlist turns a managed-preferences property list (XML or
// binary) into config keys and JSON values. Strings, booleans, numbers and
// arrays of those map directly; dates, data and nested dictionaries are not
// config values and are refused by key. Keys starting with "Payload" are a
// profile's bookkeeping, not settings, and are left out.
func decodeManagedPlist(b []byte) (map[string]json.RawMessage, error) {
	var raw map[string]any
	if _, err := plist.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("not a property list dictionary: %w", err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]json.RawMessage, len(raw))
	for _, k := range keys {
		if strings.HasPrefix(k, "Payload") {
			continue
		}
		v, err := plistValue(raw[k], true)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		j, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		out[k] = j
	}
	return out, nil
}

// plistValue checks that v is a config value: a scalar, or (at the top) an
// array of scalars.
func plistValue(v any, top bool) (any, error) {
	switch x := v.(type) {
	case string, bool, uint64, int64:
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errors.New("not a finite number")
		}
		return x, nil
	case []any:
		if !top {
			return nil, errors.New("nested arrays are not config values")
		}
		out := make([]any, len(x))
		for i, e := range x {
			ev, err := plistValue(e, false)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out[i] = ev
		}
		return out, nil
	default:
		return nil, fmt.Errorf("a %s is not a config value (want a string, number, boolean or array)", plistKind(v))
	}
}

func plistKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "dictionary"
	case []byte:
		return "data value"
	case nil:
		return "null"
	default:
		if _, ok := v.(interface{ Unix() int64 }); ok {
			return "date"
		}
		return fmt.Sprintf("%T", v)
	}
}

// Registry value types (winnt.h), for the portable decoder.
const (
	regSZ       = 1
	regExpandSZ = 2
	regBinary   = 3
	regDWORD    = 4
	regMultiSZ  = 7
	regQWORD    = 11
)

// registryValue is one value of the policy key, as read on Windows.
type registryValue struct {
	Name string
	Type uint32
	// String is the value of REG_SZ and (already expanded) REG_EXPAND_SZ.
	String string
	// Strings is the value of REG_MULTI_SZ.
	Strings []string
	// Integer is the value of REG_DWORD and REG_QWORD.
	Integer uint64
}

// managedFromRegistry maps the policy key's values to config keys and JSON
// values. Value names are lower-cased (the registry ignores case); a name
// given twice in different case, or a value type that cannot be a setting,
// is an error naming the value.
func managedFromRegistry(vals []registryValue) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(vals))
	for _, v := range vals {
		if v.Name == "" {
			continue // the key's (Default) value is not a setting
		}
		key := strings.ToLower(v.Name)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("value %q: set twice (value names are case-insensitive)", v.Name)
		}
		var x any
		switch v.Type {
		case regSZ, regExpandSZ:
			x = v.String
		case regDWORD, regQWORD:
			x = v.Integer
		case regMultiSZ:
			list := make([]string, 0, len(v.Strings))
			for _, s := range v.Strings {
				if s != "" {
					list = append(list, s)
				}
			}
			x = list
		default:
			return nil, fmt.Errorf("value %q: registry type %d is not a setting (use REG_SZ, REG_EXPAND_SZ, REG_DWORD, REG_QWORD or REG_MULTI_SZ)", v.Name, v.Type)
		}
		j, err := json.Marshal(x)
		if err != nil {
			return nil, fmt.Errorf("value %q: %w", v.Name, err)
		}
		out[key] = j
	}
	return out, nil
}
