package platform

import (
	"errors"
	"fmt"

	"golang.org/x/sys/windows/registry"
)

// policyKeyPath is ManagedRegistryKey under HKEY_LOCAL_MACHINE.
const policyKeyPath = `SOFTWARE\Policies\certagent`

// readManaged reads HKLM\SOFTWARE\Policies\certagent, where Group Policy,
// Intune (ADMX ingestion) and the MSI's public properties put certagent's
// settings (p.ManagedFile, when set, wins: tests and CERTAGENT_MANAGED).
// HKLM\SOFTWARE\Policies is writable only by administrators.
func readManaged(p Paths) (Managed, error) {
	if p.ManagedFile != "" {
		return readManagedFile(p.ManagedFile)
	}
	m := Managed{Source: ManagedRegistryKey}
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, policyKeyPath, registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("managed settings %s: open: %w", ManagedRegistryKey, err)
	}
	defer k.Close()
	names, err := k.ReadValueNames(0)
	if err != nil {
		return m, fmt.Errorf("managed settings %s: list values: %w", ManagedRegistryKey, err)
	}
	vals := make([]registryValue, 0, len(names))
	for _, name := range names {
		v, err := readRegistryValue(k, name)
		if err != nil {
			return m, fmt.Errorf("managed settings %s: value %q: %w", ManagedRegistryKey, name, err)
		}
		vals = append(vals, v)
	}
	m.Settings, err = managedFromRegistry(vals)
	if err != nil {
		return m, fmt.Errorf("managed settings %s: %w", ManagedRegistryKey, err)
	}
	return m, nil
}

func readRegistryValue(k registry.Key, name string) (registryValue, error) {
	v := registryValue{Name: name}
	_, typ, err := k.GetValue(name, nil)
	if err != nil {
		return v, err
	}
	v.Type = typ
	switch typ {
	case registry.SZ:
		v.String, _, err = k.GetStringValue(name)
	case registry.EXPAND_SZ:
		var s string
		if s, _, err = k.GetStringValue(name); err == nil {
			v.String, err = registry.ExpandString(s)
		}
	case registry.DWORD, registry.QWORD:
		v.Integer, _, err = k.GetIntegerValue(name)
	case registry.MULTI_SZ:
		v.Strings, _, err = k.GetStringsValue(name)
	}
	return v, err
}
