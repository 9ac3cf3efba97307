"""Checks de-identified DICOM files with an independent reader (pydicom), against the table.

Usage: check.py TABLE.tsv PAIRS.json
PAIRS.json is a list of [original, de-identified] paths. For every attribute of every original
(recursing into the sequence items the output keeps), the output must show what PS3.15 Table
E.1-1 asks (as resolved in src/profile.rs): removed, emptied, a dummy, a replaced UID or a
shifted date; private attributes gone; pixel data identical; the de-identification recorded.
Prints a JSON summary; exits 1 with every violation listed if there is any.
"""

import json
import sys

import pydicom
from pydicom.tag import Tag


# The top-level attributes each original data set wrote with VR UN, by id of the data set.
raw_un = {}

# What the de-identification itself writes (checked on their own below).
MARKERS = {0x00120062, 0x00120063, 0x00120064, 0x00280303}


def load_table(path):
    exact, patterns = {}, []
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        tag, basic, modified, _name = line.rstrip("\n").split("\t")
        if modified == "C":
            action = "shift"
        elif basic == "X":
            action = "remove"
        elif basic in ("Z", "X/Z"):
            action = "empty"
        elif basic in ("D", "X/D", "Z/D", "X/Z/D"):
            action = "dummy"
        elif basic in ("U", "X/Z/U*"):
            action = "uid"
        else:
            raise SystemExit(f"unknown action {basic!r}")
        if "x" in tag:
            patterns.append((tag, action))
        else:
            exact[int(tag, 16)] = action
    return exact, patterns


def action_for(tag, exact, patterns):
    # Private attributes, and group lengths (stale, and telling removed values' lengths).
    if tag.group % 2 == 1 or tag.element == 0:
        return "remove"
    if int(tag) in exact:
        return exact[int(tag)]
    text = f"{int(tag):08X}"
    for pattern, action in patterns:
        if all(p == "x" or p == c for p, c in zip(pattern.upper().replace("X", "x"), text)):
            return action
    return "keep"


def is_empty(element):
    value = element.value
    if element.VR == "SQ":
        return len(value) == 0
    return value is None or value == "" or value == b"" or (
        isinstance(value, (list, pydicom.multival.MultiValue)) and len(value) == 0
    )


def walk(original, output, exact, patterns, where, problems, counts):
    for element in original:
        tag = element.tag
        if tag.group == 0x0002 or int(tag) in MARKERS:
            continue
        name = f"{where}{element.keyword or tag}"
        action = action_for(tag, exact, patterns)
        present = tag in output
        if action == "remove":
            counts["removed"] += 1
            if present:
                problems.append(f"{name}: should be removed")
            continue
        if action == "keep" and element.VR != "SQ":
            if not present or output[tag].value != element.value:
                problems.append(f"{name}: should be kept unchanged")
            continue
        if not present:
            # A sequence written as UN (pydicom decodes it, dicom-rs does not) is removed
            # whole rather than kept unexamined.
            if not (element.VR == "SQ" and tag in raw_un.get(id(original), set())):
                problems.append(f"{name}: should be present ({action})")
            continue
        out = output[tag]
        if action == "empty":
            counts["emptied"] += 1
            if not is_empty(out):
                problems.append(f"{name}: should be empty, is {out.value!r}")
        elif element.VR == "SQ" and action == "dummy":
            counts["dummied"] += 1
            # No original item survives a dummy: one empty item stands in.
            if len(out.value) != 1 or len(out.value[0]) != 0:
                problems.append(f"{name}: a dummy sequence keeps original items")
        elif element.VR == "SQ":
            counts["sequences"] += 1
            if len(out.value) != len(element.value):
                problems.append(f"{name}: items {len(element.value)} -> {len(out.value)}")
                continue
            for i, (a, b) in enumerate(zip(element.value, out.value)):
                walk(a, b, exact, patterns, f"{name}[{i}].", problems, counts)
        elif action == "uid" or (action == "dummy" and element.VR == "UI"):
            counts["uids"] += 1
            before = [str(u) for u in (element.value if element.VM > 1 else [element.value])]
            after = [str(u) for u in (out.value if out.VM > 1 else [out.value])]
            if any(u and u in after for u in before) or not all(
                u.startswith("2.25.") for u in after if before
            ):
                problems.append(f"{name}: UID not replaced: {before} -> {after}")
        elif action == "dummy":
            counts["dummied"] += 1
            if is_empty(out):
                problems.append(f"{name}: a dummy must not be empty")
            elif not is_empty(element) and out.value == element.value and element.VR in (
                "PN", "LO", "SH", "LT", "ST", "UT", "DA", "DT", "AE", "UC"
            ):
                problems.append(f"{name}: dummy equals the original {element.value!r}")
        elif action == "shift":
            counts["shifted"] += 1
            if element.VR in ("DA", "DT") and not is_empty(element):
                if not is_empty(out) and str(out.value) == str(element.value):
                    problems.append(f"{name}: date not shifted: {element.value!r}")


def kept_texts(dataset, exact, patterns):
    """The text of the top-level attributes the profile keeps (never of sequence items, where
    identifying values hide), so that a value also found there (an institution named like its
    scanner's manufacturer) is not taken for a leak."""
    return {
        str(e.value).strip()
        for e in dataset
        if e.VR != "SQ" and action_for(e.tag, exact, patterns) == "keep"
    }


def main():
    exact, patterns = load_table(sys.argv[1])
    pairs = json.load(open(sys.argv[2]))
    problems, counts = [], {
        "files": 0, "removed": 0, "emptied": 0, "dummied": 0, "uids": 0, "shifted": 0,
        "sequences": 0, "pixel_data_checked": 0,
    }
    for original_path, output_path in pairs:
        original = pydicom.dcmread(original_path, force=True)
        # (pydicom converts values as they are read: the option must hold until then.)
        pydicom.config.replace_un_with_known_vr = False
        as_written = pydicom.dcmread(original_path, force=True)
        raw_un[id(original)] = {e.tag for e in as_written if e.VR == "UN"}
        pydicom.config.replace_un_with_known_vr = True
        output = pydicom.dcmread(output_path)
        counts["files"] += 1
        mine = []
        walk(original, output, exact, patterns, "", mine, counts)
        if output.get("PatientIdentityRemoved") != "YES":
            mine.append("PatientIdentityRemoved is not YES")
        codes = [i.CodeValue for i in output.get("DeidentificationMethodCodeSequence", [])]
        if "113100" not in codes or "113107" not in codes:
            mine.append(f"De-identification method codes missing: {codes}")
        if output.get("LongitudinalTemporalInformationModified") != "MODIFIED":
            mine.append("LongitudinalTemporalInformationModified is not MODIFIED")
        same = "SOPInstanceUID" in original and original.file_meta.get(
            "MediaStorageSOPInstanceUID"
        ) == original.get("SOPInstanceUID")
        if same and output.file_meta.MediaStorageSOPInstanceUID != output.get("SOPInstanceUID"):
            mine.append("MediaStorageSOPInstanceUID no longer equals SOPInstanceUID")
        if "PixelData" in original:
            counts["pixel_data_checked"] += 1
            if output.get("PixelData") != original.PixelData:
                mine.append("PixelData changed")
        if original.file_meta.get("MediaStorageSOPInstanceUID") and (
            output.file_meta.MediaStorageSOPInstanceUID
            == original.file_meta.MediaStorageSOPInstanceUID
        ):
            mine.append("MediaStorageSOPInstanceUID not replaced")
        # The identifying values must not survive anywhere in the file, in any encoding the
        # file could use, unless an attribute the profile keeps holds the same text (a
        # manufacturer named like the institution, say).
        raw = open(output_path, "rb").read()
        kept = kept_texts(output, exact, patterns)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
                        "ReferringPhysicianName", "InstitutionName", "AccessionNumber"):
            value = str(original.get(keyword, "") or "").strip()
            # The whole value, and each part of a name (family, given, middle) on its own.
            parts = {value} | set(value.replace("=", "^").split("^"))
            for part in parts:
                part = part.strip()
                if len(part) < 4 or any(part in text for text in kept):
                    continue
                for encoding in ("utf-8", "latin-1", "iso8859_7", "cp1251", "shift_jis",
                                 "euc_kr", "iso2022_jp"):
                    try:
                        encoded = part.encode(encoding)
                    except UnicodeEncodeError:
                        continue
                    if len(encoded) >= 4 and encoded in raw:
                        mine.append(f"{keyword} part {part!r} still appears in the output")
                        break
        meta = output.file_meta
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformation"):
            if keyword in meta:
                mine.append(f"the file meta group keeps {keyword}")
        for element in output:
            if element.tag.element == 0 and element.tag.group != 2:
                mine.append(f"a group length {element.tag} is kept")
        problems += [f"{original_path}: {p}" for p in mine]
    print(json.dumps({"counts": counts, "problems": len(problems)}))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
