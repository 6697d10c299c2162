package runtimes

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// registryEnv is the machine environment in the registry.
type registryEnv struct{}

const envSubkey = `SYSTEM\CurrentControlSet\Control\Session Manager\Environment`

func (registryEnv) Get(name string) (string, bool, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, envSubkey, registry.QUERY_VALUE)
	if err != nil {
		return "", false, err
	}
	defer k.Close()
	v, _, err := k.GetStringValue(name)
	if errors.Is(err, registry.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return v, true, nil
}

func (registryEnv) Set(name, value string) error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, envSubkey, registry.SET_VALUE)
	if err != nil {
		return err
	}
	defer k.Close()
	return k.SetStringValue(name, value)
}

func (registryEnv) Delete(name string) error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, envSubkey, registry.SET_VALUE)
	if err != nil {
		return err
	}
	defer k.Close()
	if err := k.DeleteValue(name); err != nil && !errors.Is(err, registry.ErrNotExist) {
		return err
	}
	return nil
}

// Announce broadcasts WM_SETTINGCHANGE "Environment", as the System control
// panel does, so Explorer hands the new environment to what it starts.
func (registryEnv) Announce() {
	const (
		hwndBroadcast   = 0xffff
		wmSettingChange = 0x001A
		smtoAbortIfHung = 0x0002
	)
	env, err := windows.UTF16PtrFromString("Environment")
	if err != nil {
		return
	}
	proc := windows.NewLazySystemDLL("user32.dll").NewProc("SendMessageTimeoutW")
	var result uintptr
	_, _, _ = proc.Call(hwndBroadcast, wmSettingChange, 0, uintptr(unsafe.Pointer(env)), smtoAbortIfHung, 5000, uintptr(unsafe.Pointer(&result)))
}
