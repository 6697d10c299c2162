package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/certagent/certagent/api"
	"github.com/certagent/certagent/controlplane/storage"
)

// readiness is one certificate's readiness in words.
type readiness struct {
	Active, Ready, Partial, Missing, StaleExcluded int
	Percent                                        string
	MinPercent                                     string
	// Below reports whether the guard would refuse turning it on.
	Below bool
}

// Text is the list's phrase: "trusted on 9,812 of 10,000 devices".
func (r readiness) Text() string {
	if r.Active == 0 {
		return "no active devices yet"
	}
	return fmt.Sprintf("trusted on %s of %s devices", thousands(r.Ready), thousands(r.Active))
}

// thousands writes n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// certReadiness reads one certificate's readiness, listing limit devices
// that are not ready from offset.
func (d *Dashboard) certReadiness(ctx context.Context, account, certID string, offset, limit int) (readiness, []storage.NotReadyDevice, error) {
	_, rc, set, err := d.svc.Rules().CertReadiness(ctx, account, certID, offset, limit)
	if err != nil {
		return readiness{}, nil, err
	}
	return readiness{
		Active: rc.Active, Ready: rc.Ready, Partial: rc.Partial, Missing: rc.Missing, StaleExcluded: rc.StaleExcluded,
		Percent: storage.Percent(rc.Ratio()), MinPercent: storage.Percent(set.MinReadiness),
		Below: rc.Active > 0 && rc.Ratio() < set.MinReadiness,
	}, rc.NotReady, nil
}

// addReadiness fills the rows' readiness column.
func (d *Dashboard) addReadiness(ctx context.Context, account string, rs []certRow) error {
	for i := range rs {
		rd, _, err := d.certReadiness(ctx, account, rs[i].ID, 0, 0)
		if err != nil {
			return err
		}
		rs[i].Readiness = rd.Text()
		if rd.Active > 0 {
			rs[i].ReadinessPercent = rd.Percent
			// "Below the minimum" matters where the guard will be asked:
			// an Available certificate not yet in use.
			rs[i].ReadinessBelow = rd.Below && rs[i].Status == LabelAvailable
		}
	}
	return nil
}

// deviceRow is one device as the devices page shows it.
type deviceRow struct {
	ID, Hostname, OS, AgentVersion string
	LastSeen                       time.Time
	Stale                          bool
	// Trusted names the account's roots the device holds ready in every
	// store; Partial those it holds in some.
	Trusted, Partial []string
	// Missing lists the stores that do not hold the filter's root.
	Missing []string
}

// devicesBody is the devices page's data.
type devicesBody struct {
	Rows []deviceRow
	// Certs are the filter's choices; Filter the chosen certificate id.
	Certs  []certRow
	Filter string
	// Readiness of the filter's certificate.
	Readiness *readiness
	FilterRow *certRow
	Total     int
	Page      int
	PrevPage  int
	NextPage  int
	PerPage   int
}

const devicesPerPage = 50

func (d *Dashboard) devicesPage(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	account := ss.p.AccountID
	pageNo, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil || pageNo < 1 {
		pageNo = 1
	}
	certs, _, err := d.svc.Rules().List(ctx, account)
	if err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	body := devicesBody{Certs: rows(certs, d.now()), Page: pageNo, PerPage: devicesPerPage}
	names := map[string]string{}
	for _, c := range body.Certs {
		names[storage.NormalizeFingerprint(c.Fingerprint)] = c.Name + " (" + c.Short + ")"
	}

	if f := r.URL.Query().Get("not_ready"); f != "" {
		for i := range body.Certs {
			if body.Certs[i].ID == f {
				body.Filter, body.FilterRow = f, &body.Certs[i]
			}
		}
		if body.Filter == "" {
			d.refuse(w, r, ss, storage.ErrNotFound)
			return
		}
		rd, nr, err := d.certReadiness(ctx, account, body.Filter, (pageNo-1)*devicesPerPage, devicesPerPage)
		if err != nil {
			d.internalError(w, r, ss, err)
			return
		}
		body.Readiness = &rd
		body.Total = rd.Active - rd.Ready
		for _, n := range nr {
			row := deviceRow{ID: n.DeviceID, Hostname: n.Hostname, LastSeen: n.LastSeen, Missing: n.Missing}
			if len(n.Missing) == 1 && n.Missing[0] == "*" {
				row.Missing = []string{"every store (not installed)"}
			}
			if err := d.fillDevice(ctx, account, &row, names); err != nil {
				d.internalError(w, r, ss, err)
				return
			}
			body.Rows = append(body.Rows, row)
		}
	} else {
		devs, info, err := d.svc.Devices(ctx, account, nil, pageNo, devicesPerPage)
		if err != nil {
			d.internalError(w, r, ss, err)
			return
		}
		body.Total = info.TotalCount
		for _, dev := range devs {
			row := deviceRow{ID: dev.ID, Hostname: dev.Hostname, LastSeen: dev.LastSeen.Time, Stale: dev.Stale}
			if err := d.fillDevice(ctx, account, &row, names); err != nil {
				d.internalError(w, r, ss, err)
				return
			}
			body.Rows = append(body.Rows, row)
		}
	}
	if pageNo > 1 {
		body.PrevPage = pageNo - 1
	}
	if pageNo*devicesPerPage < body.Total {
		body.NextPage = pageNo + 1
	}
	d.render(w, r, ss, http.StatusOK, "devices", page{Title: "Devices", Nav: "devices", Body: body})
}

// fillDevice adds a device's OS, agent and the roots it trusts, from its
// last report.
func (d *Dashboard) fillDevice(ctx context.Context, account string, row *deviceRow, names map[string]string) error {
	dev, err := d.svc.Device(ctx, account, row.ID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil // purged or deleted between the list and now
	}
	if err != nil {
		return err
	}
	row.OS = strings.TrimSpace(dev.OS + " " + dev.OSVersion)
	row.AgentVersion = dev.AgentVersion
	row.Stale = dev.Stale
	for _, root := range dev.Roots {
		name := names[storage.NormalizeFingerprint(root.Fingerprint)]
		if name == "" {
			continue
		}
		ready := 0
		for _, st := range root.Stores {
			if st.State == storage.StateTrusted || st.State == storage.StateInstalled {
				ready++
			}
		}
		switch {
		case len(root.Stores) > 0 && ready == len(root.Stores):
			row.Trusted = append(row.Trusted, name)
		case ready > 0:
			row.Partial = append(row.Partial, name)
		}
	}
	return nil
}

// settingsBody is the settings page's data.
type settingsBody struct {
	MinPercent string
	ActiveDays string
	MaxDays    int
}

func (d *Dashboard) settingsPage(w http.ResponseWriter, r *http.Request, ss *session) {
	set, err := d.svc.Rules().Backend().DeviceSettings(r.Context(), ss.p.AccountID)
	if err != nil {
		d.internalError(w, r, ss, err)
		return
	}
	d.renderSettings(w, r, ss, http.StatusOK, "", settingsBody{
		MinPercent: strconv.FormatFloat(set.MinReadiness*100, 'f', -1, 64),
		ActiveDays: strconv.Itoa(set.DeviceActiveDays),
	})
}

func (d *Dashboard) renderSettings(w http.ResponseWriter, r *http.Request, ss *session, status int, refusal string, body settingsBody) {
	body.MaxDays = storage.MaxDeviceActiveDays
	d.render(w, r, ss, status, "settings", page{Title: "Settings", Nav: "settings",
		Flash: refusal, FlashErr: refusal != "", Body: body})
}

// saveSettings takes min_readiness as a percentage (the API's fraction
// times 100) and device_active_days; refusals are the API's.
func (d *Dashboard) saveSettings(w http.ResponseWriter, r *http.Request, ss *session) {
	body := settingsBody{MinPercent: r.PostFormValue("min_readiness"), ActiveDays: r.PostFormValue("device_active_days")}
	var patch api.DeviceSettingsPatch
	pct, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(body.MinPercent), "%")), 64)
	if err != nil {
		d.renderSettings(w, r, ss, http.StatusBadRequest, "Refused: min_readiness must be a number of percent (0–100).", body)
		return
	}
	frac := pct / 100
	patch.MinReadiness = &frac
	days, err := strconv.Atoi(strings.TrimSpace(body.ActiveDays))
	if err != nil {
		d.renderSettings(w, r, ss, http.StatusBadRequest,
			fmt.Sprintf("Refused: device_active_days must be a whole number of days (1–%d).", storage.MaxDeviceActiveDays), body)
		return
	}
	patch.DeviceActiveDays = &days
	if _, err := d.svc.SetDeviceSettings(r.Context(), ss.p.AccountID, patch); err != nil {
		status, msg := errorMessage(err, r.URL.Path)
		if status >= 500 {
			d.internalError(w, r, ss, err)
			return
		}
		d.renderSettings(w, r, ss, status, msg, body)
		return
	}
	d.sessions.setFlash(ss, "Settings saved.", false)
	http.Redirect(w, r, Prefix+"settings", http.StatusSeeOther)
}
