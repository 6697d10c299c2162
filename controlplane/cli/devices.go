package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane"
	"github.com/certagent/certagent/controlplane/storage"
)

// devicesCommand runs `devices list|show|delete`.
func devicesCommand(ctx context.Context, sub string, args []string, env Env) error {
	var c common
	example := `certplane devices ` + sub + ` --account "$ACCOUNT"`
	if sub == "show" || sub == "delete" {
		example += ` --id "$DEVICE"`
	}
	fs := newFlags("devices "+sub, env, &c, example)
	account := fs.String("account", "", "account id (required)")
	var id, stale *string
	var page, perPage *int
	switch sub {
	case "list":
		stale = fs.String("stale", "", "true: only devices silent longer than device_active_days; false: only active ones")
		page = fs.Int("page", 1, "page, from 1")
		perPage = fs.Int("per-page", 100, fmt.Sprintf("devices per page, 1..%d", controlplane.MaxPerPage))
	case "show", "delete":
		id = fs.String("id", "", "device id (or give it as the argument)")
	default:
		return fmt.Errorf("%w: unknown devices command %q", errUsage, sub)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if id != nil && *id == "" && len(pos) == 1 {
		*id = pos[0]
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if err := checkAccount(*account); err != nil {
		return err
	}
	var devID string
	if id != nil {
		if devID, err = controlplane.ParseDeviceID(*id); err != nil {
			return fmt.Errorf("%w: --id: %v", errUsage, err)
		}
	}
	var staleFilter *bool
	if stale != nil {
		switch *stale {
		case "":
		case "true", "false":
			b := *stale == "true"
			staleFilter = &b
		default:
			return fmt.Errorf("%w: --stale must be true or false", errUsage)
		}
		if *page < 1 || *perPage < 1 || *perPage > controlplane.MaxPerPage {
			return fmt.Errorf("%w: --page must be ≥ 1 and --per-page 1..%d", errUsage, controlplane.MaxPerPage)
		}
	}
	svc, b, err := c.service(ctx, env, false, controlplane.Options{})
	if err != nil {
		return err
	}
	defer b.Close()
	switch sub {
	case "list":
		ds, info, err := svc.Devices(ctx, *account, staleFilter, *page, *perPage)
		if err != nil {
			return explainDevice(err)
		}
		if c.json {
			return printJSON(env.Stdout, map[string]any{"devices": ds, "result_info": info})
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tHOSTNAME\tOS\tAGENT\tLAST SEEN\tSTALE")
		for _, d := range ds {
			st := ""
			if d.Stale {
				st = "stale"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\n", d.ID, d.Hostname, d.OS, d.OSVersion, d.AgentVersion, d.LastSeen.Format(time.RFC3339), st)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if info.TotalCount > info.Count {
			fmt.Fprintf(env.Stderr, "certplane: page %d: %d of %d devices (--page for more)\n", info.Page, info.Count, info.TotalCount)
		}
		return nil
	case "show":
		d, err := svc.Device(ctx, *account, devID)
		if err != nil {
			return explainDevice(err)
		}
		if c.json {
			return printJSON(env.Stdout, d)
		}
		return printDevice(env, d)
	default: // delete
		d, err := svc.DeleteDevice(ctx, *account, devID)
		if err != nil {
			return explainDevice(err)
		}
		if c.json {
			return printJSON(env.Stdout, d)
		}
		fmt.Fprintln(env.Stdout, "deleted", d.ID)
		return nil
	}
}

func printDevice(env Env, d api.Device) error {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\t%s\n", d.ID)
	fmt.Fprintf(tw, "Hostname\t%s\n", d.Hostname)
	fmt.Fprintf(tw, "OS\t%s %s\n", d.OS, d.OSVersion)
	fmt.Fprintf(tw, "Agent\t%s\n", d.AgentVersion)
	fmt.Fprintf(tw, "Last seen\t%s\n", d.LastSeen.Format(time.RFC3339))
	fmt.Fprintf(tw, "Last sync\t%s\n", d.SyncedAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "Stale\t%v\n", d.Stale)
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nROOT\tSTORE\tSTATE\tDETAIL")
	for _, r := range d.Roots {
		fp := r.Fingerprint
		if len(fp) > 23 {
			fp = fp[:23] + "…"
		}
		for _, s := range r.Stores {
			target := s.Store
			if s.User != "" {
				target += ":" + s.User
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", fp, target, s.State, s.Detail)
		}
	}
	return tw.Flush()
}

func explainDevice(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("no such account or device: %w", err)
	}
	return err
}

// certReadiness prints `cert readiness`.
func certReadiness(ctx context.Context, svc *controlplane.Service, env Env, account, id string, asJSON bool) error {
	rd, err := svc.Readiness(ctx, account, id, 1, controlplane.MaxPerPage)
	if err != nil {
		return explain(err)
	}
	if asJSON {
		return printJSON(env.Stdout, rd)
	}
	fmt.Fprintf(env.Stdout, "ready on %d of %d active devices (%s; minimum %s)\n", rd.Ready, rd.ActiveDevices,
		storage.Percent(rd.Ratio), storage.Percent(rd.MinReadiness))
	fmt.Fprintf(env.Stdout, "partial %d, missing %d, stale (not counted) %d\n", rd.Partial, rd.Missing, rd.StaleExcluded)
	if len(rd.NotReady) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nDEVICE\tHOSTNAME\tLAST SEEN\tNOT READY IN")
	for _, n := range rd.NotReady {
		missing := strings.Join(n.Missing, ",")
		if missing == "*" {
			missing = "every store"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.DeviceID, n.Hostname, n.LastSeen.Format(time.RFC3339), missing)
	}
	return tw.Flush()
}

// accountSet runs `account set`: the readiness settings.
func accountSet(ctx context.Context, args []string, env Env) error {
	var c common
	fs := newFlags("account set", env, &c, `certplane account set --account "$ACCOUNT" --min-readiness 0.9 --device-active-days 14`)
	account := fs.String("account", "", "account id (required)")
	minReady := fs.Float64("min-readiness", 0, "share of active devices (0..1) that must trust a root before it can be turned on")
	days := fs.Int("device-active-days", 0, fmt.Sprintf("days after which a silent device is stale and not counted (1..%d)", storage.MaxDeviceActiveDays))
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := checkAccount(*account); err != nil {
		return err
	}
	var p api.DeviceSettingsPatch
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "min-readiness":
			p.MinReadiness = minReady
		case "device-active-days":
			p.DeviceActiveDays = days
		}
	})
	if p.MinReadiness == nil && p.DeviceActiveDays == nil {
		return fmt.Errorf("%w: give --min-readiness, --device-active-days or both", errUsage)
	}
	svc, b, err := c.service(ctx, env, false, controlplane.Options{})
	if err != nil {
		return err
	}
	defer b.Close()
	cur, err := svc.Rules().Backend().DeviceSettings(ctx, *account)
	if err != nil {
		return explain(err)
	}
	if p.MinReadiness != nil {
		cur.MinReadiness = *p.MinReadiness
	}
	if p.DeviceActiveDays != nil {
		cur.DeviceActiveDays = *p.DeviceActiveDays
	}
	if err := cur.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	s, err := svc.SetDeviceSettings(ctx, *account, p)
	if err != nil {
		return explain(err)
	}
	out := api.DeviceSettings{MinReadiness: s.MinReadiness, DeviceActiveDays: s.DeviceActiveDays}
	if c.json {
		return printJSON(env.Stdout, out)
	}
	fmt.Fprintf(env.Stdout, "min_readiness %v, device_active_days %d\n", out.MinReadiness, out.DeviceActiveDays)
	return nil
}
