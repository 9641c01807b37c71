package stamps

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/jedisct1/go-dnsstamps"
)

// Resolver is one row of a dnscrypt-proxy 1.x resolvers list.
type Resolver struct {
	Name        string // the -R name; Lookup compares it ignoring ASCII case
	FullName    string
	Description string
	Location    string
	URL         string
	DNSSEC      bool // "DNSSEC validation" is "yes"
	NoLogs      bool // "No logs" is "yes"
	Namecoin    bool // "Namecoin" is "yes"

	// The columns as 1.x reads them for "-R random" (see [Random]): the
	// column is there and does not say "no".
	dnssecNotNo, noLogsNotNo bool

	// Stamp is the DNSCrypt stamp built from the row's "Resolver address",
	// "Provider name" and "Provider public key", with the DNSSEC and no-log
	// properties set from the columns above. A 1.x list has no column for
	// the no-filter property, so it is never set.
	//
	// A row without a provider name and key may give instead, in an extra
	// "DNS stamp" column, a stamp of another protocol (DNS-over-TLS,
	// DNS-over-HTTPS, plain DNS): Stamp is then that stamp, and Address the
	// row's "Resolver address", if any: where to connect, "host:port" (an
	// onion service, say, whose name only a proxy may resolve).
	Stamp   dnsstamps.ServerStamp
	Address string
}

// Limits on a resolvers list.
const (
	// MaxListSize is the largest list [ParseCSV] reads. The last 1.x list
	// was about 100 KiB.
	MaxListSize = 8 << 20
	// MaxColumns is the most columns a header or row may have, as in 1.x
	// (OPTIONS_RESOLVERS_LIST_MAX_COLS).
	MaxColumns = 50
	// maxRowErrors bounds the number of row errors joined in one error.
	maxRowErrors = 100
)

// Column names, as in the header of the 1.x list.
const (
	colName        = "Name"
	colFullName    = "Full name"
	colDescription = "Description"
	colLocation    = "Location"
	colURL         = "URL"
	colDNSSEC      = "DNSSEC validation"
	colNoLogs      = "No logs"
	colNamecoin    = "Namecoin"
	colAddress     = "Resolver address"
	colProvider    = "Provider name"
	colKey         = "Provider public key"
	colStamp       = "DNS stamp" // not in 1.x lists
)

// ParseCSV reads a resolvers list in the format of dnscrypt-resolvers.csv
// from dnscrypt-proxy 1.x (1.9.5 header: Name, Full name, Description,
// Location, Coordinates, URL, Version, DNSSEC validation, No logs,
// Namecoin, Resolver address, Provider name, Provider public key, Provider
// public key TXT record).
//
// As in 1.x, columns are found by their header name, so their order does
// not matter and unknown columns are ignored; a header needs 4 to
// [MaxColumns] columns. Header names are matched after trimming white
// space, ignoring ASCII case. A header without Name, Resolver address,
// Provider name or Provider public key makes the whole list unusable.
//
// Rows with fewer than 4 columns, or whose first column is empty or starts
// with '#', are skipped silently. Fields are separated by commas. A double
// quote starts a quoted section, which may hold commas and line breaks and
// in which "" is one quote; text around quoted sections is kept. Fields
// are then trimmed of white space, quoted white space included, as in 1.x.
// Lines may end in LF or CRLF; a leading UTF-8 byte order mark and a
// missing final line break are fine.
//
// A row that cannot be used (empty name, missing provider name, key or
// address, a bad key or address, too many columns, an unterminated quote)
// is skipped and reported as a [*RowError]; the errors of all such rows are
// joined with errors.Join (at most 100, then a count) and returned along
// with the good rows, in file order. The caller decides whether a partly
// bad list is acceptable. Provider names are kept as written: see [Parse].
//
// Errors that make the list unusable wrap [ErrInvalidList] and come with a
// nil slice. The input is limited to [MaxListSize] bytes.
func ParseCSV(r io.Reader) ([]Resolver, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxListSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading resolvers list: %w", err)
	}
	if len(data) > MaxListSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidList, MaxListSize)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidList)
	}

	p := csvParser{data: data, line: 1}
	header, hdrLine, err := p.record()
	if err != nil {
		return nil, fmt.Errorf("%w: header on line %d: %w", ErrInvalidList, hdrLine, err)
	}
	header = slices.Clone(header)
	if len(header) < 4 {
		return nil, fmt.Errorf("%w: header has %d columns, want at least 4", ErrInvalidList, len(header))
	}
	if len(header) > MaxColumns {
		return nil, fmt.Errorf("%w: header has %d columns, limit %d", ErrInvalidList, len(header), MaxColumns)
	}
	cols := make(map[string]int, len(header))
	for i, h := range header {
		h = asciiLower(h)
		if _, dup := cols[h]; !dup { // 1.x uses the first match
			cols[h] = i
		}
	}
	index := func(name string) int {
		if i, ok := cols[asciiLower(name)]; ok {
			return i
		}
		return -1
	}
	var (
		iName, iAddress, iProvider, iKey   = index(colName), index(colAddress), index(colProvider), index(colKey)
		iFullName, iDescription, iLocation = index(colFullName), index(colDescription), index(colLocation)
		iURL, iDNSSEC, iNoLogs, iNamecoin  = index(colURL), index(colDNSSEC), index(colNoLogs), index(colNamecoin)
		iStamp                             = index(colStamp)
	)
	for _, c := range []struct {
		i    int
		name string
	}{{iName, colName}, {iAddress, colAddress}, {iProvider, colProvider}, {iKey, colKey}} {
		if c.i < 0 {
			return nil, fmt.Errorf("%w: no %q column", ErrInvalidList, c.name)
		}
	}

	var (
		list    []Resolver
		errs    []error
		nErrors int
	)
	bad := func(e *RowError) {
		nErrors++
		if nErrors <= maxRowErrors {
			errs = append(errs, e)
		}
	}
	for !p.done() {
		row, line, err := p.record()
		if err != nil {
			bad(&RowError{Line: line, Err: fmt.Errorf("%w: %w", ErrInvalidList, err)})
			continue
		}
		if len(row) < 4 || row[0] == "" || row[0][0] == '#' {
			continue
		}
		field := func(i int) string {
			if 0 <= i && i < len(row) {
				return row[i]
			}
			return ""
		}
		notNo := func(i int) bool { return 0 <= i && i < len(row) && !asciiEqualFold(row[i], "no") }
		res := Resolver{
			Name:        field(iName),
			FullName:    field(iFullName),
			Description: field(iDescription),
			Location:    field(iLocation),
			URL:         field(iURL),
			DNSSEC:      asciiEqualFold(field(iDNSSEC), "yes"),
			NoLogs:      asciiEqualFold(field(iNoLogs), "yes"),
			Namecoin:    asciiEqualFold(field(iNamecoin), "yes"),
			dnssecNotNo: notNo(iDNSSEC),
			noLogsNotNo: notNo(iNoLogs),
		}
		if len(row) > MaxColumns {
			bad(&RowError{Line: line, Name: res.Name,
				Err: fmt.Errorf("%w: %d columns, limit %d", ErrInvalidList, len(row), MaxColumns)})
			continue
		}
		build := res.buildStamp
		if field(iProvider) == "" && field(iKey) == "" && field(iStamp) != "" {
			build = func(addr, _, _ string) error { return res.otherStamp(addr, field(iStamp)) }
		}
		if err := build(field(iAddress), field(iProvider), field(iKey)); err != nil {
			bad(&RowError{Line: line, Name: res.Name, Err: err})
			continue
		}
		list = append(list, res)
	}
	if nErrors > maxRowErrors {
		errs = append(errs, fmt.Errorf("%w: %d more bad rows", ErrInvalidList, nErrors-maxRowErrors))
	}
	return list, errors.Join(errs...)
}

func (res *Resolver) buildStamp(addr, provider, key string) error {
	switch {
	case res.Name == "":
		return fmt.Errorf("%w: %s", ErrMissingField, colName)
	case provider == "":
		return fmt.Errorf("%w: %s", ErrMissingField, colProvider)
	case key == "":
		return fmt.Errorf("%w: %s", ErrMissingField, colKey)
	case addr == "":
		return fmt.Errorf("%w: %s", ErrMissingField, colAddress)
	}
	pk, err := ParseProviderKey(key)
	if err != nil {
		return err
	}
	var props dnsstamps.ServerInformalProperties
	if res.DNSSEC {
		props |= dnsstamps.ServerInformalPropertyDNSSEC
	}
	if res.NoLogs {
		props |= dnsstamps.ServerInformalPropertyNoLog
	}
	res.Stamp, err = NewDNSCrypt(addr, provider, pk, props)
	return err
}

// otherStamp takes the row's stamp, of another protocol than DNSCrypt (whose
// rows give the provider's name and key), and its address, if any.
func (res *Resolver) otherStamp(addr, stamp string) error {
	st, err := Parse(stamp)
	if err != nil {
		return err
	}
	if st.Proto == dnsstamps.StampProtoTypeDNSCrypt {
		return fmt.Errorf("%w: %s", ErrMissingField, colProvider)
	}
	if res.Name == "" {
		return fmt.Errorf("%w: %s", ErrMissingField, colName)
	}
	if addr != "" {
		if !validHostPort(addr) {
			return fmt.Errorf("%w: %q is not host:port", ErrInvalidAddress, addr)
		}
		res.Address = addr
	}
	if res.DNSSEC {
		st.Props |= dnsstamps.ServerInformalPropertyDNSSEC
	}
	if res.NoLogs {
		st.Props |= dnsstamps.ServerInformalPropertyNoLog
	}
	res.Stamp = st
	return nil
}

// validHostPort reports whether s is "host:port" with an IP address or a
// host name (letters, digits, '-' and '_' in labels of 1 to 63 bytes) and a
// port in 1..65535.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	if n, err := parsePort(port); err != nil || n == 0 {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return ValidHostName(host)
}

// ValidHostName reports whether h is a host name: letters, digits, '-' and
// '_' in dot-separated labels of 1 to 63 bytes that do not start or end
// with '-', 253 bytes at most, an optional final dot (.onion names are).
func ValidHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Lookup returns the first resolver named name, comparing names without
// regard to ASCII case as 1.x does for -R. It does not handle the name
// "random": see [Random]. The error wraps [ErrNotFound].
func Lookup(list []Resolver, name string) (Resolver, error) {
	for _, res := range list {
		if asciiEqualFold(res.Name, name) {
			return res, nil
		}
	}
	return Resolver{}, fmt.Errorf("%w: %q", ErrNotFound, name)
}

// Random picks a resolver for 1.x's "-R random": uniformly among the
// [Candidates]. A nil r uses the math/rand/v2 top-level source. The error
// wraps [ErrNoCandidate].
func Random(list []Resolver, r *rand.Rand) (Resolver, error) {
	picked, err := RandomN(list, 1, r)
	if err != nil {
		return Resolver{}, err
	}
	return picked[0], nil
}

// RandomN picks n distinct rows of list among the [Candidates], uniformly
// (each set of n candidates as likely as any other, in random order); n <=
// 0 picks none. With n = 1 it draws as [Random] does. A nil r uses the
// math/rand/v2 top-level source. With fewer than n candidates the error
// wraps [ErrNoCandidate].
func RandomN(list []Resolver, n int, r *rand.Rand) ([]Resolver, error) {
	if n <= 0 {
		return nil, nil
	}
	cands := Candidates(list)
	if len(cands) < n {
		if len(cands) == 0 {
			return nil, ErrNoCandidate
		}
		return nil, fmt.Errorf("%w: %d wanted, %d candidates", ErrNoCandidate, n, len(cands))
	}
	intN := rand.IntN
	if r != nil {
		intN = r.IntN
	}
	// The first n steps of a Fisher-Yates shuffle.
	for i := range n {
		j := i + intN(len(cands)-i)
		cands[i], cands[j] = cands[j], cands[i]
	}
	return cands[:n:n], nil
}

// Candidates returns the rows of list that 1.x's "-R random" chooses
// among, in list order: those with an IPv4 address whose "DNSSEC
// validation" and "No logs" columns are present and do not say "no"
// (ASCII case ignored). As in 1.x, an empty value or one such as "unknown"
// counts, so a candidate's DNSSEC and NoLogs fields may be false; a row
// without one of the columns never counts. For a Resolver that ParseCSV
// did not make, the DNSSEC and NoLogs fields decide. The result is a new
// slice.
func Candidates(list []Resolver) []Resolver {
	var cands []Resolver
	for _, res := range list {
		if (res.DNSSEC || res.dnssecNotNo) && (res.NoLogs || res.noLogsNotNo) && isIPv4(res.Stamp.ServerAddrStr) {
			cands = append(cands, res)
		}
	}
	return cands
}

func isIPv4(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Is4()
}

// asciiLower lowers ASCII letters only.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// asciiEqualFold is strings.EqualFold for ASCII letters only, like 1.x's
// evutil_ascii_strcasecmp.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// csvParser splits the 1.x CSV dialect into records.
type csvParser struct {
	data   []byte
	pos    int
	line   int      // line number at pos
	fields []string // reused by record
	field  []byte   // reused by record
}

func (p *csvParser) done() bool { return p.pos >= len(p.data) }

// record returns the next record's trimmed fields, valid until the next
// call, and the line it starts on. A record ends at a line break outside
// quotes or at the end of the input. A quote anywhere in a field opens a
// quoted section that ends at the next lone quote; text before, inside and
// after quoted sections is kept. An unterminated quote consumes the rest
// of the input and is an error.
func (p *csvParser) record() ([]string, int, error) {
	start := p.line
	p.fields, p.field = p.fields[:0], p.field[:0]
	quoted := false
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		p.pos++
		if c == '\n' {
			p.line++
		}
		if quoted {
			if c != '"' {
				p.field = append(p.field, c)
				continue
			}
			if p.pos < len(p.data) && p.data[p.pos] == '"' {
				p.field = append(p.field, '"')
				p.pos++
				continue
			}
			quoted = false
			continue
		}
		switch c {
		case '"':
			quoted = true
		case ',':
			p.fields = append(p.fields, trimField(p.field))
			p.field = p.field[:0]
		case '\n':
			return append(p.fields, trimField(p.field)), start, nil
		default:
			p.field = append(p.field, c)
		}
	}
	if quoted {
		return nil, start, errors.New("unterminated quoted field")
	}
	return append(p.fields, trimField(p.field)), start, nil
}

// trimField trims the white space C's isspace knows, as minicsv does.
func trimField(b []byte) string {
	isSpace := func(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return string(b)
}
