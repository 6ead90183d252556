package filelog

import (
	"encoding/binary"
	"hash/crc32"
	"os"
)

// A file of records: each is [4 bytes length][4 bytes CRC-32C][data].

// scanRecords calls fn for every whole, checksummed record of f from byte
// from on, in order, up to the first one that is not: it returns where that
// one starts (or the end of the file), why it is bad ("" when the file ended
// cleanly: at its end, or where only zeros follow), and whether more data
// follows it (then it is damage, not a tear).
func scanRecords(f *os.File, from, maxLen int64, fn func(off int64, data []byte)) (end int64, bad string, followed bool, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, "", false, err
	}
	size := st.Size()
	var hdr [recordHeader]byte
	off := from
	for off < size {
		n, _ := f.ReadAt(hdr[:], off)
		length := int64(binary.BigEndian.Uint32(hdr[:4]))
		if n == recordHeader && length == 0 {
			zero, err := zerosFrom(f, off, size)
			if err != nil {
				return off, "", false, err
			}
			if zero {
				return off, "", false, nil // preallocated space
			}
		}
		switch {
		case n < recordHeader:
			return off, "partial record header", false, nil
		case length == 0 || length > maxLen:
			return off, "impossible record length", false, nil
		case off+recordHeader+length > size:
			return off, "record runs past the end of the file", false, nil
		}
		data := make([]byte, length)
		if _, err := f.ReadAt(data, off+recordHeader); err != nil {
			return off, "", false, err
		}
		if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			next := off + recordHeader + length
			zero, err := zerosFrom(f, next, size)
			if err != nil {
				return off, "", false, err
			}
			return off, "checksum mismatch", !zero, nil
		}
		fn(off, data)
		off += recordHeader + length
	}
	return off, "", false, nil
}

// record frames data as a record.
func record(data []byte) []byte { return appendRecord(make([]byte, 0, recordHeader+len(data)), data) }

// appendRecord appends data, framed as a record, to buf.
func appendRecord(buf, data []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(data, castagnoli))
	return append(buf, data...)
}

// zerosFrom says whether f holds only zeros from off to size.
func zerosFrom(f *os.File, off, size int64) (bool, error) {
	buf := make([]byte, min(size-off, 64<<10))
	for off < size {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil {
			return false, err
		}
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		off += int64(n)
	}
	return true, nil
}
