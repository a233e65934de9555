package tokenizer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Field numbers of sentencepiece_model.proto used here.
const (
	fieldModelPieces       = 1 // ModelProto.pieces
	fieldModelTrainer      = 2 // ModelProto.trainer_spec
	fieldModelNormalizer   = 3 // ModelProto.normalizer_spec
	fieldModelDenormalizer = 5 // ModelProto.denormalizer_spec

	fieldPiecePiece = 1 // SentencePiece.piece
	fieldPieceScore = 2 // SentencePiece.score
	fieldPieceType  = 3 // SentencePiece.type

	fieldTrainerModelType        = 3  // TrainerSpec.model_type (BPE = 2)
	fieldTrainerVocabSize        = 4  // TrainerSpec.vocab_size
	fieldTrainerWhitespaceSuffix = 24 // TrainerSpec.treat_whitespace_as_suffix
	fieldTrainerByteFallback     = 35 // TrainerSpec.byte_fallback
	fieldTrainerUnkID            = 40 // TrainerSpec.unk_id
	fieldTrainerBosID            = 41 // TrainerSpec.bos_id
	fieldTrainerEosID            = 42 // TrainerSpec.eos_id
	fieldTrainerPadID            = 43 // TrainerSpec.pad_id
	fieldTrainerUnkSurface       = 44 // TrainerSpec.unk_surface

	fieldNormName         = 1 // NormalizerSpec.name
	fieldNormCharsmap     = 2 // NormalizerSpec.precompiled_charsmap
	fieldNormDummyPrefix  = 3 // NormalizerSpec.add_dummy_prefix
	fieldNormExtraSpaces  = 4 // NormalizerSpec.remove_extra_whitespaces
	fieldNormEscapeSpaces = 5 // NormalizerSpec.escape_whitespaces

	modelTypeBPE = 2
)

// Protocol-buffer wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// protoReader walks the fields of one serialised protocol-buffer message.
type protoReader struct {
	b   []byte
	off int
}

var errProtoTruncated = errors.New("truncated")

func (r *protoReader) varint() (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		return 0, fmt.Errorf("bad varint at offset %d", r.off)
	}
	r.off += n
	return v, nil
}

// next returns the next field's number and wire type and its value: the
// varint, the 32- or 64-bit word, or the bytes of a length-delimited field.
func (r *protoReader) next() (field int, wire int, v uint64, b []byte, err error) {
	key, err := r.varint()
	if err != nil {
		return 0, 0, 0, nil, err
	}
	if key>>3 == 0 || key>>3 > math.MaxInt32 {
		return 0, 0, 0, nil, fmt.Errorf("bad field number %d at offset %d", key>>3, r.off)
	}
	field, wire = int(key>>3), int(key&7)
	switch wire {
	case wireVarint:
		v, err = r.varint()
	case wireFixed64:
		if len(r.b)-r.off < 8 {
			return 0, 0, 0, nil, errProtoTruncated
		}
		v = binary.LittleEndian.Uint64(r.b[r.off:])
		r.off += 8
	case wireFixed32:
		if len(r.b)-r.off < 4 {
			return 0, 0, 0, nil, errProtoTruncated
		}
		v = uint64(binary.LittleEndian.Uint32(r.b[r.off:]))
		r.off += 4
	case wireBytes:
		var n uint64
		if n, err = r.varint(); err != nil {
			return 0, 0, 0, nil, err
		}
		if n > uint64(len(r.b)-r.off) {
			return 0, 0, 0, nil, fmt.Errorf("field %d: length %d past the end (%d bytes left)", field, n, len(r.b)-r.off)
		}
		b = r.b[r.off : r.off+int(n)]
		r.off += int(n)
	default:
		return 0, 0, 0, nil, fmt.Errorf("field %d: unsupported wire type %d", field, wire)
	}
	return field, wire, v, b, err
}

// FromModelProto builds the tokenizer of a SentencePiece .model file (a
// serialised ModelProto). Only BPE models with the identity normaliser
// (no precompiled_charsmap, as LLaMA's) and whitespace as prefix are
// supported; others are refused with an error saying which setting.
func FromModelProto(data []byte) (*SPM, error) {
	var (
		pieces []string
		scores []float32
		types  []Type
		// Defaults of sentencepiece_model.proto.
		modelType                   uint64 = 1
		bos, eos                    int64  = 1, 2
		dummy, extraSpaces, escaped        = true, true, true
		byteFallback, suffix               = false, false
		normName, unkSurfaceText    string = "", unkSurface
	)
	r := protoReader{b: data}
	for r.off < len(r.b) {
		field, wire, _, b, err := r.next()
		if err != nil {
			return nil, fmt.Errorf("sentencepiece model: %w", err)
		}
		if wire != wireBytes {
			continue
		}
		switch field {
		case fieldModelPieces:
			p, s, ty, err := parsePiece(b)
			if err != nil {
				return nil, fmt.Errorf("sentencepiece model: piece %d: %w", len(pieces), err)
			}
			pieces, scores, types = append(pieces, p), append(scores, s), append(types, ty)
		case fieldModelTrainer:
			err := walkProto(b, func(f int, v uint64, s []byte) {
				switch f {
				case fieldTrainerModelType:
					modelType = v
				case fieldTrainerWhitespaceSuffix:
					suffix = v != 0
				case fieldTrainerByteFallback:
					byteFallback = v != 0
				case fieldTrainerBosID:
					bos = int64(int32(v))
				case fieldTrainerEosID:
					eos = int64(int32(v))
				case fieldTrainerUnkSurface:
					unkSurfaceText = string(s)
				}
			})
			if err != nil {
				return nil, fmt.Errorf("sentencepiece model: trainer_spec: %w", err)
			}
		case fieldModelDenormalizer:
			var charsmap int
			err := walkProto(b, func(f int, _ uint64, s []byte) {
				if f == fieldNormCharsmap {
					charsmap = len(s)
				}
			})
			if err != nil {
				return nil, fmt.Errorf("sentencepiece model: denormalizer_spec: %w", err)
			}
			if charsmap > 0 {
				return nil, fmt.Errorf("sentencepiece model: a denormalizer is not supported")
			}
		case fieldModelNormalizer:
			var charsmap int
			err := walkProto(b, func(f int, v uint64, s []byte) {
				switch f {
				case fieldNormName:
					normName = string(s)
				case fieldNormCharsmap:
					charsmap = len(s)
				case fieldNormDummyPrefix:
					dummy = v != 0
				case fieldNormExtraSpaces:
					extraSpaces = v != 0
				case fieldNormEscapeSpaces:
					escaped = v != 0
				}
			})
			if err != nil {
				return nil, fmt.Errorf("sentencepiece model: normalizer_spec: %w", err)
			}
			if charsmap > 0 {
				return nil, fmt.Errorf("sentencepiece model: normalizer %q with a precompiled charsmap is not supported (only identity)", normName)
			}
		}
	}
	switch {
	case modelType != modelTypeBPE:
		return nil, fmt.Errorf("sentencepiece model: model_type %d is not supported (only BPE = 2)", modelType)
	case suffix:
		return nil, fmt.Errorf("sentencepiece model: treat_whitespace_as_suffix is not supported")
	case !escaped:
		return nil, fmt.Errorf("sentencepiece model: escape_whitespaces = false is not supported")
	case len(pieces) == 0:
		return nil, fmt.Errorf("sentencepiece model: no pieces")
	}
	// spm finds <unk> by type and <s>, </s> by id, but only when that piece
	// is a control piece.
	special := func(id int64, want Type) int {
		if id < 0 || id >= int64(len(pieces)) || types[id] != want {
			return -1
		}
		return int(id)
	}
	opt := SPMOptions{
		BOS: special(bos, TypeControl), EOS: special(eos, TypeControl), UNK: -1,
		AddDummyPrefix: dummy, ByteFallback: byteFallback, RemoveExtraWhitespaces: extraSpaces,
	}
	// UNK: -1 takes the piece of type UNKNOWN, as spm does whatever unk_id says.
	t, err := NewSPM(pieces, scores, types, opt)
	if err != nil {
		return nil, fmt.Errorf("sentencepiece model: %w", err)
	}
	t.unkSurface = unkSurfaceText
	return t, nil
}

// walkProto calls fn for each varint, fixed32 or length-delimited field of
// a message (v holds numbers, s bytes).
func walkProto(b []byte, fn func(field int, v uint64, s []byte)) error {
	r := protoReader{b: b}
	for r.off < len(r.b) {
		field, _, v, s, err := r.next()
		if err != nil {
			return err
		}
		fn(field, v, s)
	}
	return nil
}

func parsePiece(b []byte) (string, float32, Type, error) {
	var (
		piece string
		score float32
		ty    = TypeNormal
	)
	err := walkProto(b, func(f int, v uint64, s []byte) {
		switch f {
		case fieldPiecePiece:
			piece = string(s)
		case fieldPieceScore:
			score = math.Float32frombits(uint32(v))
		case fieldPieceType:
			ty = Type(int32(v))
		}
	})
	return piece, score, ty, err
}

// MarshalModelProto returns the tokenizer as a SentencePiece .model file
// (a serialised ModelProto: BPE, identity normaliser) that sentencepiece
// itself loads and encodes with exactly as this SPM does.
func (t *SPM) MarshalModelProto() []byte {
	var b []byte
	for i, p := range t.pieces {
		var m []byte
		m = appendBytesField(m, fieldPiecePiece, []byte(p))
		m = protoKey(m, fieldPieceScore, wireFixed32)
		m = binary.LittleEndian.AppendUint32(m, math.Float32bits(t.scores[i]))
		m = appendVarintField(m, fieldPieceType, uint64(t.types[i]))
		b = appendBytesField(b, fieldModelPieces, m)
	}
	var ts []byte
	ts = appendVarintField(ts, fieldTrainerModelType, modelTypeBPE)
	ts = appendVarintField(ts, fieldTrainerVocabSize, uint64(len(t.pieces)))
	ts = appendVarintField(ts, fieldTrainerByteFallback, boolBit(t.opt.ByteFallback))
	ts = appendVarintField(ts, fieldTrainerUnkID, uint64(int64(t.unk)))
	ts = appendVarintField(ts, fieldTrainerBosID, uint64(int64(t.opt.BOS)))
	ts = appendVarintField(ts, fieldTrainerEosID, uint64(int64(t.opt.EOS)))
	ts = appendVarintField(ts, fieldTrainerPadID, math.MaxUint64)
	if t.unkSurface != unkSurface {
		ts = appendBytesField(ts, fieldTrainerUnkSurface, []byte(t.unkSurface))
	}
	b = appendBytesField(b, fieldModelTrainer, ts)
	var ns []byte
	ns = appendBytesField(ns, fieldNormName, []byte("identity"))
	ns = appendVarintField(ns, fieldNormDummyPrefix, boolBit(t.opt.AddDummyPrefix))
	ns = appendVarintField(ns, fieldNormExtraSpaces, boolBit(t.opt.RemoveExtraWhitespaces))
	ns = appendVarintField(ns, fieldNormEscapeSpaces, 1)
	return appendBytesField(b, fieldModelNormalizer, ns)
}

func boolBit(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

func protoKey(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field)<<3|uint64(wire))
}

func appendVarintField(b []byte, field int, v uint64) []byte {
	return binary.AppendUvarint(protoKey(b, field, wireVarint), v)
}

func appendBytesField(b []byte, field int, s []byte) []byte {
	b = binary.AppendUvarint(protoKey(b, field, wireBytes), uint64(len(s)))
	return append(b, s...)
}
