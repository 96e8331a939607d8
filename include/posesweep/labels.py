"""Labels: DeepLabCut's annotation files in, one tidy label table out.

DeepLabCut keeps one ``labeled-data/<video stem>/CollectedData_<scorer>.h5`` (and
``.csv``) per video: rows indexed by ("labeled-data", video stem, image name),
columns by (scorer, bodyparts, coords). Those files are the interface to a lab's
own tools, so they are written exactly in that format. Every later stage reads
the tidy table instead: one row per frame and landmark.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import LabelFileError
from .frames import frame_index_of
from .layout import atomic_path, read_csv_table, read_lab_text, write_csv_atomic
from .safe_hdf import CodeInPickleError, read_hdf_without_code

log = logging.getLogger(__name__)

TIDY_COLUMNS = ["video", "participant", "image", "frame_index", "landmark", "x_px", "y_px",
                "image_width_px", "image_height_px"]


def collected_data_file(labeled_data_dir: Path, video_stem: str, scorer: str) -> Path:
    return Path(labeled_data_dir) / video_stem / f"CollectedData_{scorer}.h5"


def to_dlc_frame(wide: pd.DataFrame, video_stem: str, image_names: list[str], bodyparts: list[str],
                 scorer: str) -> pd.DataFrame:
    """DeepLabCut's annotation frame from ``<landmark>_x``/``_y`` columns, one row per image."""
    columns = pd.MultiIndex.from_product([[scorer], bodyparts, ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    index = pd.MultiIndex.from_tuples([("labeled-data", video_stem, name) for name in image_names])
    values = np.column_stack([wide[f"{bp}_{c}"].to_numpy(float) for bp in bodyparts for c in ("x", "y")])
    return pd.DataFrame(values, index=index, columns=columns)


def write_collected_data(frame: pd.DataFrame, labeled_data_dir: Path, video_stem: str, scorer: str) -> Path:
    target = collected_data_file(labeled_data_dir, video_stem, scorer)
    with atomic_path(target.with_suffix(".csv")) as tmp:
        frame.to_csv(tmp)
    with atomic_path(target) as tmp:
        frame.to_hdf(tmp, key="df_with_missing", mode="w")
    return target


def read_collected_data(path: Path) -> pd.DataFrame:
    """Read a CollectedData file with a 3-level row index: the .h5, else DeepLabCut's .csv copy beside it.

    DeepLabCut writes both. A truncated or corrupt .h5 is read from an intact .csv with a warning; when both are
    unreadable the error names both files and why.
    """
    h5, csv = Path(path).with_suffix(".h5"), Path(path).with_suffix(".csv")
    problems = []
    for source, read in ((h5, read_hdf_without_code), (csv, _read_csv)):
        if not source.exists():
            continue
        try:
            frame = read(source)
        except CodeInPickleError as error:  # planted, not damaged: never fall back, never hand it to DeepLabCut
            raise LabelFileError(f"the labels of {h5.parent.name} hold code", file=source,
                                 found=f"a pickle inside: {error}", allowed="labels as DeepLabCut writes them "
                                 "(numbers and names only)", fix="replace the file with the lab's own copy from "
                                 "DeepLabCut, and find out who wrote this one") from None
        except Exception as error:  # a lab's file: any failure to parse it is reported with the file's name
            problems.append(f"{source}: {type(error).__name__}: {str(error).strip().splitlines()[0][:400]}")
            continue
        if problems:
            log.warning("%s cannot be read (%s); using DeepLabCut's copy %s instead", h5, problems[0], source)
        frame, individuals = single_animal(_with_three_level_index(frame, h5.parent.name), source)
        if individuals:
            log.info("%s is a multi-animal project's label file (individuals: %s): read as one animal's (or "
                     "person's) labels, each landmark under its own name", source, ", ".join(individuals))
        if source == h5:
            _refuse_a_csv_edited_since(h5, csv, frame)
        return frame
    if not problems:
        raise LabelFileError(f"no labels for {h5.parent.name}", file=h5, found="neither the .h5 nor the .csv exists",
                             allowed=f"{h5.name} or {csv.name} (DeepLabCut writes both)",
                             fix="label the frames in DeepLabCut and save, or copy the lab's label files there")
    if len(problems) == 1:  # the one copy there is
        raise LabelFileError(f"the labels of {h5.parent.name} cannot be read", file=csv if csv.exists() else h5,
                             found=problems[0].split(": ", 1)[1], allowed="a CollectedData file as DeepLabCut "
                             "writes it", fix="save the labels again from DeepLabCut's labeling GUI (it writes "
                             "both files), or restore them from a backup")
    raise LabelFileError(f"neither copy of the labels of {h5.parent.name} can be read", file=f"{h5} and {csv}",
                         details=problems, allowed="a CollectedData file as DeepLabCut writes it",
                         fix="save the labels again from DeepLabCut's labeling GUI (it writes both files), or "
                             "restore them from a backup")


# a spreadsheet set to a language with decimal commas saves "scorer;Ann;Ann" and 512,3 for 512.3
SEMICOLON_CSV_FIX = ("open it in the spreadsheet with '.' as its decimal separator (Excel: File > Options > "
                     "Advanced, untick 'Use system separators') and save it as 'CSV (Comma delimited)', or label in "
                     "DeepLabCut's GUI, which writes both files")
# what pandas' read_csv reads as missing, which this reader read so too: R's NA, Python's None, Excel's #N/A
NOT_A_NUMBER = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
                "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
LABEL_VALUE_TOLERANCE_PX = 1e-3  # a spreadsheet rounds a number it saves to ~10 digits; a correction moves pixels


def _refuse_a_csv_edited_since(h5: Path, csv: Path, from_h5: pd.DataFrame) -> None:
    """DeepLabCut trains from the .h5, and so does posesweep. A .csv beside it saved later with other labels (the
    lab corrected them in a spreadsheet and did not convert) would leave the corrections out without a word: refuse,
    naming the first difference. The .csv that DeepLabCut writes a moment after the .h5 holds the same labels."""
    if not csv.exists() or csv.stat().st_mtime <= h5.stat().st_mtime:
        return
    try:
        from_csv = single_animal(_with_three_level_index(_read_csv(csv), h5.parent.name), csv)[0]
    except Exception as error:  # a lab's file: whatever stops the reading is what the lab must hear
        found = f"it cannot be read: {str(error).strip().splitlines()[0][:300]}"
    else:
        found = _label_differences(from_h5, from_csv)
        if found is None:
            return
    config = h5.parents[2] / "config.yaml"  # <project>/labeled-data/<video>/CollectedData_<scorer>.h5
    raise LabelFileError(f"the labels of {h5.parent.name} were changed in {csv.name} after {h5.name} was saved",
                         file=csv, found=found,
                         allowed=f"the same labels in both copies: DeepLabCut trains from {h5.name}, so the "
                                 f"changes in {csv.name} would be left out",
                         fix=f"if {csv.name} holds corrections: deeplabcut.convertcsv2h5('{config}', "
                             f"userfeedback=False) writes them into {h5.name}; if not: restore {csv.name} from a "
                             "backup, or save the labels again in DeepLabCut's GUI")


def _label_differences(from_h5: pd.DataFrame, from_csv: pd.DataFrame) -> str | None:
    """How two copies of one video's labels differ, by image, landmark and x/y (the scorer's name aside); None
    where they agree to ``LABEL_VALUE_TOLERANCE_PX``."""
    def by_image(frame: pd.DataFrame) -> pd.DataFrame:
        positions = positions_only(frame).astype(float)
        positions.index = [str(image) for image in frame.index.get_level_values(-1)]
        positions.columns = pd.MultiIndex.from_arrays([positions.columns.get_level_values(-2).astype(str),
                                                       positions.columns.get_level_values(-1).astype(str)])
        return positions

    h5_values, csv_values = by_image(from_h5), by_image(from_csv)
    images = h5_values.index.union(csv_values.index)
    columns = h5_values.columns.union(csv_values.columns)
    h5_values, csv_values = h5_values.reindex(index=images, columns=columns), csv_values.reindex(index=images,
                                                                                                  columns=columns)
    same = (h5_values - csv_values).abs().le(LABEL_VALUE_TOLERANCE_PX) | (h5_values.isna() & csv_values.isna())
    differing = [(image, column) for image, row in (~same).iterrows() for column, differs in row.items() if differs]
    if not differing:
        return None
    image, (landmark, coord) = differing[0]

    def shown(value: float) -> str:
        return "no label" if np.isnan(value) else f"{value:.2f}"

    return (f"{len(differing)} label value(s) differ; the first: {image}, {landmark} {coord}: "
            f"{shown(csv_values.at[image, (landmark, coord)])} in the .csv, "
            f"{shown(h5_values.at[image, (landmark, coord)])} in the .h5")


def _read_csv(path: Path) -> pd.DataFrame:
    """DeepLabCut's CSV copy: one row index column ("labeled-data/<video>/<image>") or three (2.2+), read as text
    (a folder named 0012 is not the number 12), then three header rows over the numbers (four in a multi-animal
    project's: its individuals under the scorer).

    How many columns name the image is read from the rows, as DeepLabCut's ``convertcsv2h5`` reads it, not from
    the header: a file whose rows name it in one column under 2.2's three-column header (rewritten by another
    tool) was read with every label one landmark to the left of its own, without a word. A spreadsheet's padding
    (empty columns after the last landmark, a row of commas alone, where a cell was once typed in and cleared) is
    not data: it made a landmark of no name that failed every later stage."""
    text = io.StringIO(read_lab_text(path), newline="")  # a spreadsheet on Windows saves its code page
    lines = [[cell.strip() for cell in row] for row in csv.reader(text)]  # "x, y" as a script writes it too
    first_line = ",".join(lines[0]) if lines else ""
    if first_line.count(";") > first_line.count(","):
        raise ValueError(f"its values are separated by ';', not ',' (saved by a spreadsheet set to a language "
                         f"with decimal commas; DeepLabCut reads only commas): {SEMICOLON_CSV_FIX}")
    levels = ["scorer", "bodyparts", "coords"]
    if len(lines) > 1 and lines[1] and lines[1][0] == "individuals":  # a multi-animal project's
        levels.insert(1, "individuals")
    header, rows = _without_spreadsheet_padding(lines[:len(levels)], lines[len(levels):])
    coords = header[-1] if len(header) == len(levels) else []
    first_label = next((i for i, coord in enumerate(coords) if coord in ("x", "y", "likelihood")), None)
    if not first_label:
        raise ValueError("no x/y label columns under the header rows: not a DeepLabCut CollectedData table")
    values_per_row = len(coords) - first_label
    columns = pd.MultiIndex.from_tuples(
        [tuple(row[i] if i < len(row) and row[i] else f"Unnamed: {i}_level_{level}"
               for level, row in enumerate(header)) for i in range(first_label, len(coords))], names=levels)
    if not any(rows):  # the header alone: no frame labelled
        return pd.DataFrame(columns=columns, index=pd.MultiIndex.from_tuples([], names=[None] * 3), dtype=float)
    index_width = _index_columns_of_rows(rows, len(levels), first_label, values_per_row)
    if index_width != first_label:
        log.info("%s names each image in one column (labeled-data/<video>/<image>) under a header that gives "
                 "that %d: read as one", path, first_label)
    numbered = [(line, row + [""] * (index_width + values_per_row - len(row)))
                for line, row in enumerate(rows, start=len(levels) + 1) if row]
    raw = pd.DataFrame([row for _, row in numbered], dtype=str)
    names = raw.iloc[:, :index_width]
    values = raw.iloc[:, index_width:].mask(raw.iloc[:, index_width:].isin(NOT_A_NUMBER))
    frame = values.apply(pd.to_numeric, errors="coerce")
    if (words := frame.isna() & values.notna()).to_numpy().any():
        row, column = np.argwhere(words.to_numpy())[0]
        raise ValueError(f"line {numbered[row][0]} holds {values.iat[row, column]!r} as {columns[column][-2]}'s "
                         f"{columns[column][-1]}, where a number (or nothing, for a landmark not labelled) belongs: "
                         f"not a DeepLabCut CollectedData table as written; mend that cell")
    frame.index = pd.MultiIndex.from_frame(names) if index_width > 1 else pd.Index(names.iloc[:, 0])
    frame.index.names = [None] * index_width
    frame.columns = columns
    return frame


def _without_spreadsheet_padding(header: list[list[str]], rows: list[list[str]]
                                 ) -> tuple[list[list[str]], list[list[str]]]:
    """The header rows and label rows without what a spreadsheet pads a table with: a row of empty cells alone
    becomes ``[]`` (its line number kept), and the empty cells every header row ends with are taken off each label
    row too, where they are empty there (a value under no header still fails, naming its line)."""
    rows = [row if any(row) else [] for row in rows]
    # the empty cells after the last filled one, in the header row that has fewest
    padding = min((next((i for i, cell in enumerate(reversed(row)) if cell), len(row)) for row in header), default=0)
    if not padding:
        return header, rows
    return ([row[:len(row) - padding] for row in header],
            [row[:len(row) - padding] if len(row) >= padding and not any(row[len(row) - padding:]) else row
             for row in rows])


def _index_columns_of_rows(rows: list[list[str]], header_lines: int, header_index_width: int,
                           values_per_row: int) -> int:
    """How many leading columns of the label rows name the image: the header's (one, or DeepLabCut 2.2's three),
    or one where every row holds the whole path in one under a three-column header. A row of any other width (cut
    short, a value added) fails naming its line: read by position, its labels would be other landmarks'."""
    widths = {line: len(row) - values_per_row for line, row in enumerate(rows, start=header_lines + 1) if row}
    found = set(widths.values())
    if not found or found == {header_index_width}:
        return header_index_width
    if found == {1}:
        return 1
    line, width = next((line, width) for line, width in widths.items() if width != header_index_width)
    raise ValueError(f"line {line} has {width + values_per_row} fields where the header has "
                     f"{header_index_width + values_per_row} ({header_index_width} naming the image, "
                     f"{values_per_row} label values): a row cut short or with fields added cannot be read by "
                     f"position (its labels would be other landmarks'); mend that row, or save the labels again "
                     f"from DeepLabCut's labeling GUI")


def single_animal(frame: pd.DataFrame, source: Path) -> tuple[pd.DataFrame, list[str]]:
    """A multi-animal DeepLabCut project's table (a header row of individuals under the scorer) as single-animal
    labels, and the individuals it named; a single-animal table as it is, and none. One individual (and its
    ``single`` unique landmarks) is one participant; several with the same landmarks are refused."""
    if frame.columns.nlevels != 4:
        return frame, []
    # DeepLabCut's new multi-animal project lists individual1..3; a lab that labels one leaves the others' columns
    # empty: an individual without a single label is no one's labels (`single`, the unique landmarks, is kept)
    named = frame.columns.get_level_values(1).astype(str)
    animals = [name for name in dict.fromkeys(named) if name != "single"]
    labelled = [name for name in animals if frame.loc[:, named == name].notna().to_numpy().any()]
    individuals = (labelled or animals[:1]) + (["single"] if "single" in set(named) else [])
    frame = frame.loc[:, named.isin(individuals)]
    single = frame.droplevel(1, axis=1)
    if single.columns.duplicated().any():
        raise LabelFileError(f"the label file holds the labels of {len(individuals)} individuals with the same "
                             f"landmarks", file=source, found="individuals " + ", ".join(individuals),
                             allowed="one individual per file: posesweep trains single-animal DeepLabCut networks, "
                                     "one participant per video",
                             fix="keep one individual's columns (pandas: frame.xs('<individual>', "
                                 "level='individuals', axis=1, drop_level=False)), or label the frames in a "
                                 "single-animal DeepLabCut project")
    single.columns = single.columns.set_names(["scorer", "bodyparts", "coords"])
    return single, individuals


def _with_three_level_index(frame: pd.DataFrame, folder: str) -> pd.DataFrame:
    """Rows indexed ("labeled-data", <video folder>, <image>), however the file names its images: DeepLabCut 2.2's
    three columns, or one path, "labeled-data/<stem>/<img>" as older projects write it, but also a path written
    whole by a conversion script (C:\\Users\\...\\labeled-data\\<stem>\\<img>: its last three parts) or the
    image's name alone (in the folder the file is in, ``folder``). Other lengths broke every later stage."""
    if not isinstance(frame.index, pd.MultiIndex):  # older projects: "labeled-data/<stem>/<img>"
        parts = [tuple(part for part in str(p).replace("\\", "/").split("/") if part) for p in frame.index]
        frame.index = pd.MultiIndex.from_tuples([_as_labeled_data_path(p, folder) for p in parts])
    return frame


def _as_labeled_data_path(parts: tuple[str, ...], folder: str) -> tuple[str, str, str]:
    if len(parts) >= 3:
        return parts[-3], parts[-2], parts[-1]
    if len(parts) == 2:
        return "labeled-data", parts[0], parts[1]
    return "labeled-data", folder, parts[-1] if parts else ""


def positions_only(frame: pd.DataFrame) -> pd.DataFrame:
    """A CollectedData table's x and y columns: DeepLabCut's ``create_training_dataset`` reads each frame's row as
    x, y pairs and drops only a stray likelihood, so a visibility (newer napari-deeplabcut) would be read as a
    position."""
    return frame.loc[:, frame.columns.get_level_values(-1).isin(["x", "y"])]


def keyed_to_folder(frame: pd.DataFrame, folder: str, source: Path) -> pd.DataFrame:
    """Labels keyed to the labeled-data folder their file sits in, beside its images: the file of a renamed
    folder still names the old one, and DeepLabCut would look for the images there."""
    named = list(frame.index.get_level_values(1).unique())
    if named in ([folder], []):  # (a file of no rows names no folder: nothing to key)
        return frame
    if len(named) > 1:
        raise LabelFileError("one label file names the frames of several videos", file=source,
                             found="videos " + ", ".join(map(str, named)),
                             allowed=f"only {folder!r}, the labeled-data folder the file is in",
                             fix="keep one CollectedData file per labeled-data folder, as DeepLabCut writes them "
                                 "(its GUI saves each folder's labels beside its images)")
    log.warning("%s names its frames as those of video %r but sits in folder %r (renamed?): read as %r's frames",
                source, named[0], folder, folder)
    keyed = frame.copy()
    keyed.index = pd.MultiIndex.from_tuples([("labeled-data", folder, image) for _, _, image in frame.index])
    return keyed


def once_per_image(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    """Each image's row once. A label file can hold an image's row twice (label files merged by hand, a refine
    round saved over an earlier one): DeepLabCut's ``create_training_dataset`` then trains on the frame twice, and
    its ``dropduplicatesinannotatinfiles`` keeps the first. A repeat with the same labels is read once, with a
    warning; one with other labels is kept, and validation refuses the frame (which was meant is the lab's to say).
    """
    repeated = frame.index.duplicated(keep="first")
    if not repeated.any():
        return frame
    first = frame[~repeated]
    same = np.array([not flag or frame.iloc[i].equals(first.loc[frame.index[i]]) for i, flag in enumerate(repeated)])
    images = sorted({str(frame.index[i][-1]) for i in np.flatnonzero(repeated & same)})
    if images:
        log.warning("%s holds the row of %d image(s) twice, with the same labels (%s): read once (DeepLabCut would "
                    "train on them twice)", source, len(images), ", ".join(images[:5]) +
                    (f" and {len(images) - 5} more" if len(images) > 5 else ""))
    return frame[~(repeated & same)]


def named_for_scorer(frame: pd.DataFrame, scorer: str, source: Path) -> pd.DataFrame:
    """Labels under the scorer their file is named for. DeepLabCut reads ``CollectedData_<scorer>.h5`` and then
    drops a file whose header does not start (its labelers sorted) with the scorer ("labeled by a different
    scorer", its print only) or, where it is the only one, fails with a KeyError. A lab that renamed another
    labeler's file (DeepLabCut's own advice for labels made elsewhere) means it as the scorer's. A header of
    several labelers keeps the scorer's columns, as the name says; with none of them the scorer, which one is
    meant is not the name's to say, and the file is refused."""
    inner = [str(name) for name in frame.columns.get_level_values(0).unique()]
    if inner == [scorer]:
        return frame
    if len(inner) > 1 and scorer in inner:
        others = [name for name in inner if name != scorer]
        log.warning("%s holds the labels of %d labelers (%s): read as %s's, as its name says; %s left out (DeepLabCut "
                    "reads one labeler per file and would have left the whole file out of training)", source,
                    len(inner), ", ".join(inner), scorer, ", ".join(others))
        return frame.loc[:, frame.columns.get_level_values(0) == scorer]
    if len(inner) > 1:
        raise LabelFileError(f"the label file holds the labels of {len(inner)} labelers, none of them {scorer}",
                             file=source, found="labelers " + ", ".join(inner),
                             allowed=f"the labels of {scorer}, the scorer the file is named for (one labeler per "
                                     f"file: DeepLabCut leaves out or fails on any other)",
                             fix=f"save each labeler's labels in a file of its own, CollectedData_<labeler>.h5, and "
                                 f"name the one to train on CollectedData_{scorer}.h5")
    log.warning("%s is named for scorer %s but its header names %s (a renamed file?): read as %s's labels, as its "
                "name says; DeepLabCut itself would leave the file out of training", source, scorer, inner[0], scorer)
    renamed = frame.copy()
    renamed.columns = pd.MultiIndex.from_tuples([(scorer, *rest) for _, *rest in frame.columns],
                                                names=frame.columns.names)
    return renamed


def tidy_from_collected(frame: pd.DataFrame, images_root: Path) -> pd.DataFrame:
    """One row per (image, landmark); missing labels stay as NaN rows."""
    import cv2

    scorer = frame.columns.get_level_values(0)[0]
    rows = []
    sizes: dict[Path, tuple[int, int]] = {}
    for (_, stem, image), values in frame.iterrows():
        image_path = Path(images_root) / stem / image
        if image_path not in sizes:  # (imread only an existing file: OpenCV prints a warning for a missing one)
            img = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED) if image_path.is_file() else None
            sizes[image_path] = (img.shape[1], img.shape[0]) if img is not None else (np.nan, np.nan)
        width, height = sizes[image_path]
        for bodypart in frame.columns.get_level_values("bodyparts").unique():
            rows.append({
                "video": stem,
                "participant": stem,
                "image": image,
                "frame_index": frame_index_of(image),
                "landmark": bodypart,
                "x_px": values[(scorer, bodypart, "x")],
                "y_px": values[(scorer, bodypart, "y")],
                "image_width_px": width,
                "image_height_px": height,
            })
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)


def labeled_images(frame: pd.DataFrame) -> list[str]:
    """Images of a CollectedData table with at least one label, an x or a y (DeepLabCut's older labeling GUI saved
    a row of NaN for every frame of the folder, labeled or not; newer napari-deeplabcut saves a visibility beside
    them, 0 where nothing is labelled)."""
    return [image for (_, _, image), labeled in zip(frame.index, positions_only(frame).notna().any(axis=1))
            if labeled]


def missing_label_shares(tables: list[pd.DataFrame], bodyparts: list[str]) -> tuple[dict[str, float], int]:
    """Each landmark's share of the labeled frames of CollectedData ``tables`` without its position (an x and a
    y), and how many labeled frames there are: what ``validate_labels`` reads from the run's label table, read here
    straight from a project's files (no image opened)."""
    missing, labeled = dict.fromkeys(bodyparts, 0), 0
    for table in tables:
        positions = positions_only(table)
        positions = positions[positions.notna().any(axis=1)]
        labeled += len(positions)
        present = set(positions.columns.get_level_values("bodyparts"))
        for bodypart in bodyparts:
            if bodypart in present:
                missing[bodypart] += int(positions.xs(bodypart, axis=1, level="bodyparts").isna().any(axis=1).sum())
            else:
                missing[bodypart] += len(positions)
    return ({bodypart: count / labeled for bodypart, count in missing.items()} if labeled else {}), labeled


def build_label_table(labeled_data_dir: Path, video_stems: list[str], scorer: str,
                      sources: dict[str, str] | None = None) -> pd.DataFrame:
    """Every labeled frame of the videos, one row per landmark; a frame whose row holds no label at all is not a
    labeled frame (it would count towards a frame set while teaching nothing) and is left out, with a warning that
    names the lab's file (``sources``: video stem -> the file the labels were copied from, where not the project's
    own)."""
    tables = []
    for stem in video_stems:
        path = collected_data_file(labeled_data_dir, stem, scorer)
        frame = read_collected_data(path)
        labeled = labeled_images(frame)
        named = (sources or {}).get(stem, path)
        if not labeled:  # its header alone, or rows without a label: a video no one has labelled yet
            log.warning("%s holds no labelled frame: video %s is not in the study (label its frames in "
                        "DeepLabCut's GUI and save, then start a new run)", named, stem)
            continue
        if frame.loc[:, frame.columns.get_level_values(-1) == "likelihood"].notna().to_numpy().any():
            log.warning("%s holds a likelihood beside each x and y, as a network's predictions do (a "
                        "machinelabels file renamed?): its positions are read as labels. Where no person has "
                        "checked them, correct them in deeplabcut.refine_labels first: networks trained and tested "
                        "on another network's output measure their agreement with it, not with a labeller", named)
        if len(labeled) < len(frame):
            blank = sorted(set(frame.index.get_level_values(-1)) - set(labeled))
            log.warning("%s: %d of %d frames have no label at all and are left out (%s%s)", named, len(blank),
                        len(frame), ", ".join(blank[:5]), " ..." if len(blank) > 5 else "")
            frame = frame[frame.index.get_level_values(-1).isin(labeled)]
        tables.append(tidy_from_collected(frame, labeled_data_dir))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=TIDY_COLUMNS)
    return table.sort_values(["video", "image", "landmark"], kind="stable").reset_index(drop=True)


def write_label_table(table: pd.DataFrame, target: Path) -> Path:
    return write_csv_atomic(table, target)


def read_label_table(path: Path) -> pd.DataFrame:
    return read_csv_table(path)
