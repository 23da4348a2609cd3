"""eval.labels: Aff-Wild2 layouts (ABAW3+, ABAW 2020), generic CSVs, and fitting labels to the store's frame counts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from eval.labels import LabelError, LabelSet, fit_to_frames, load_labels
from eval.tasks import (AUS_ABAW3, AUS_ABAW2020, EXPR_CLASSES_ABAW3, EXPR_CLASSES_ABAW2020, TaskSpec, au_task,
                         expr_task, va_task)

ABAW3 = {"va": "VA_Estimation_Challenge", "expr": "EXPR_Classification_Challenge", "au": "AU_Detection_Challenge"}
ABAW2020 = {"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"}
HEADERS = {
    "abaw3": {"va": "valence,arousal", "expr": ",".join(EXPR_CLASSES_ABAW3), "au": ",".join(AUS_ABAW3)},
    "abaw2020": {"va": "valence,arousal", "expr": ",".join(EXPR_CLASSES_ABAW2020), "au": ",".join(AUS_ABAW2020)},
}


def write_annotation(root: Path, folder: str, split: str, video: str, header: str, rows: list[str]) -> Path:
    path = root / folder / split / f"{video}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


@pytest.fixture
def abaw3(tmp_path) -> Path:
    """ABAW3 folders: VA for a _left/_right pair (train) and video3 (val), EXPR for video3, AU for the pair."""
    root, headers = tmp_path / "abaw3", HEADERS["abaw3"]
    write_annotation(root, ABAW3["va"], "Train_Set", "10-60-1280x720_left", headers["va"],
                     ["0.5,-0.25", "-5,-5", "1,1"])
    write_annotation(root, ABAW3["va"], "Train_Set", "10-60-1280x720_right", headers["va"], ["0.1,0.2", "0.3,0.4"])
    write_annotation(root, ABAW3["va"], "Validation_Set", "video3", headers["va"], ["0,0"] * 4)
    write_annotation(root, ABAW3["expr"], "Validation_Set", "video3", headers["expr"], ["7", "-1", "4", "0"])
    au_row = ",".join(["1"] + ["0"] * 11)
    write_annotation(root, ABAW3["au"], "Train_Set", "10-60-1280x720_left", headers["au"],
                     [au_row, ",".join(["-1"] * 12), au_row])
    write_annotation(root, ABAW3["au"], "Train_Set", "10-60-1280x720_right", headers["au"], [au_row])
    return root


def test_abaw3_layout_tasks_splits_and_invalid_codes(abaw3):
    labels = load_labels(abaw3)
    assert labels.layout() == "abaw3" and labels.source == str(abaw3)
    assert labels.tasks == {"va": va_task("abaw2022"), "expr": expr_task("abaw2022"), "au": au_task("abaw2022")}
    assert list(labels.tasks) == ["va", "expr", "au"]
    assert labels.video_ids() == ["10-60-1280x720_left", "10-60-1280x720_right", "video3"]
    assert labels.splits["va"] == {"10-60-1280x720_left": "train", "10-60-1280x720_right": "train", "video3": "val"}
    assert labels.splits["expr"] == {"video3": "val"}
    assert not labels.per_clip

    va = labels.labels["10-60-1280x720_left"]["va"]
    assert va.dtype == np.float32 and va.shape == (3, 2)
    np.testing.assert_array_equal(va, [[0.5, -0.25], [-5, -5], [1, 1]])
    np.testing.assert_array_equal(labels.tasks["va"].valid(va), [True, False, True])
    expr = labels.labels["video3"]["expr"]
    assert expr.dtype == np.int64
    np.testing.assert_array_equal(expr, [7, -1, 4, 0])
    au = labels.labels["10-60-1280x720_left"]["au"]
    assert au.dtype == np.float32 and au.shape == (3, 12)
    np.testing.assert_array_equal(labels.tasks["au"].valid(au), [True, False, True])
    assert set(labels.labels["video3"]) == {"va", "expr"}


def test_abaw2020_layout_with_training_set_folder(tmp_path):
    headers = HEADERS["abaw2020"]
    write_annotation(tmp_path, ABAW2020["expr"], "Training_Set", "1-30-1280x720", headers["expr"], ["6", "-1"])
    write_annotation(tmp_path, ABAW2020["au"], "Validation_Set", "2-30-640x360", headers["au"],
                     [",".join(["0"] * 7 + ["1"])])
    labels = load_labels(tmp_path)
    assert labels.layout() == "abaw2020"
    assert labels.tasks == {"expr": expr_task("abaw2020"), "au": au_task("abaw2020")}
    assert labels.tasks["expr"].n_outputs == 7 and labels.tasks["au"].columns == AUS_ABAW2020
    assert labels.splits == {"expr": {"1-30-1280x720": "train"}, "au": {"2-30-640x360": "val"}}
    np.testing.assert_array_equal(labels.labels["1-30-1280x720"]["expr"], [6, -1])


def test_tasks_restriction(abaw3):
    labels = load_labels(abaw3, tasks=["au", "va"])
    assert list(labels.tasks) == ["va", "au"] and set(labels.splits) == {"va", "au"}
    assert labels.video_ids() == ["10-60-1280x720_left", "10-60-1280x720_right", "video3"]
    assert all("expr" not in tasks for tasks in labels.labels.values())
    assert list(load_labels(abaw3, tasks="expr").tasks) == ["expr"]  # TASKS=expr as given on the command line
    assert load_labels(abaw3, tasks="expr").video_ids() == ["video3"]


def test_asking_for_a_task_the_labels_lack_names_those_present(tmp_path):
    write_annotation(tmp_path, ABAW3["va"], "Train_Set", "a", "valence,arousal", ["0,0"])
    with pytest.raises(LabelError, match=r"no au labels here; the labels have va"):
        load_labels(tmp_path, tasks=["va", "au"])
    with pytest.raises(LabelError, match=r"unknown task\(s\) emotion"):
        load_labels(tmp_path, tasks=["emotion"])


def test_header_mismatch_names_the_file(tmp_path):
    path = write_annotation(tmp_path, ABAW3["expr"], "Train_Set", "a", ",".join(EXPR_CLASSES_ABAW2020), ["0"])
    with pytest.raises(LabelError, match="header") as error:
        load_labels(tmp_path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("folder, row, cause", [
    ("va", "0.5,2", "line 3 \\(frame 1\\)"),           # outside [-1, 1]
    ("expr", "8", "line 3 \\(frame 1\\)"),             # ABAW3 has classes 0..7
    ("au", ",".join(["2"] * 12), "line 3 \\(frame 1\\)"),
    ("va", "0.5", "line 3 \\(frame 1\\) holds 0.5, expected 2 comma-separated value"),
    ("au", ",".join(["x"] * 12), "line 3 \\(frame 1\\) holds .*not all numbers"),
    ("expr", "", "line 3 \\(frame 1\\) holds nothing"),
])
def test_values_outside_the_coding_name_the_line(tmp_path, folder, row, cause):
    header = HEADERS["abaw3"][folder]
    good = {"va": "0,0", "expr": "0", "au": ",".join(["0"] * 12)}[folder]
    path = write_annotation(tmp_path, ABAW3[folder], "Train_Set", "a", header, [good, row, good])
    with pytest.raises(LabelError, match=cause) as error:
        load_labels(tmp_path, strict=True)  # --strict-labels: out-of-range values abort, as they all once did
    assert str(path) in str(error.value)


@pytest.mark.parametrize("folder, row", [("va", "0.5,2"), ("expr", "8"), ("au", ",".join(["2"] * 12))])
def test_values_outside_the_coding_are_masked_and_counted(tmp_path, folder, row, caplog):
    """TSAV: Aff-Wild2 has out-of-range rows; they are masked (invalid code) and reported, never an abort."""
    header = HEADERS["abaw3"][folder]
    good = {"va": "0,0", "expr": "0", "au": ",".join(["0"] * 12)}[folder]
    path = write_annotation(tmp_path, ABAW3[folder], "Train_Set", "a", header, [good, row, row, good])
    with caplog.at_level(logging.WARNING, logger="affectsync.labels"):
        label_set = load_labels(tmp_path)
    assert label_set.out_of_range == {str(path): {folder: 2}}
    valid = label_set.tasks[folder].valid(label_set.labels["a"][folder])
    np.testing.assert_array_equal(valid, [True, False, False, True])
    assert f"2 {folder} row(s) outside the task's coding, masked" in caplog.text


def test_folder_without_a_layout_says_what_was_expected(tmp_path):
    (tmp_path / "Train_Set").mkdir()
    with pytest.raises(LabelError, match="VA_Estimation_Challenge.*VA_Set.*give its parent"):
        load_labels(tmp_path)
    with pytest.raises(LabelError, match="does not exist"):
        load_labels(tmp_path / "missing")


def test_affwild2_folder_errors(tmp_path):
    write_annotation(tmp_path, ABAW3["va"], "Train_Set", "a", "valence,arousal", ["0,0"])
    with pytest.raises(LabelError, match="column_map applies to CSV labels only"):
        load_labels(tmp_path, column_map={"expr": "emotion"})
    write_annotation(tmp_path, ABAW3["va"], "Validation_Set", "a", "valence,arousal", ["0,0"])
    with pytest.raises(LabelError, match="video a is also labelled in the train split"):
        load_labels(tmp_path)
    (tmp_path / ABAW2020["au"]).mkdir()
    with pytest.raises(LabelError, match="both Aff-Wild2 layouts"):
        load_labels(tmp_path)


def test_generic_per_frame_csv_with_splits_and_gaps(tmp_path):
    path = write_csv(tmp_path / "labels.csv", """
video,frame,split,valence,arousal,expr,AU12,AU1
a,0,train,0.5,0.5,happy,1,0
a,2,train,-0.5,0.25,Sadness,0,1
a,3,train,,,3,,
b,1,val,0,0,SURPRISED,1,1
""")
    labels = load_labels(path)
    assert labels.layout() == "csv" and not labels.per_clip
    assert labels.tasks["au"] == TaskSpec("au", ("AU12", "AU1"), "abaw2022")  # CSV order
    assert labels.tasks["expr"] == expr_task("abaw2022")
    assert labels.splits == {task: {"a": "train", "b": "val"} for task in ("va", "expr", "au")}
    a = labels.labels["a"]
    np.testing.assert_array_equal(a["expr"], [4, -1, 5, 3])  # frame 1 missing -> invalid
    np.testing.assert_array_equal(a["va"], [[0.5, 0.5], [-5, -5], [-0.5, 0.25], [-5, -5]])
    np.testing.assert_array_equal(a["au"], [[1, 0], [-1, -1], [0, 1], [-1, -1]])
    np.testing.assert_array_equal(labels.labels["b"]["expr"], [-1, 6])


def test_generic_csv_duplicate_frame_is_an_error(tmp_path):
    path = write_csv(tmp_path / "labels.csv", "video,frame,expr\na,0,1\na,1,2\na,0,3")
    with pytest.raises(LabelError, match="line 4: video a frame 0 is already on line 2"):
        load_labels(path)


def test_generic_per_clip_csv_with_file_column_and_column_map(tmp_path):
    path = write_csv(tmp_path / "clips.csv", """
file,emotion,v,a
clips/x.mp4,Angry,0.1,0.2
y.flv,fearful,-0.1,-0.2
z.avi,Disgusted,0,0
w.mp4,neutral,0,0
""")
    labels = load_labels(path, column_map={"expr": "emotion", "valence": "v", "arousal": "a"})
    assert labels.video_ids() == ["w", "x", "y", "z"] and labels.per_clip == {"w", "x", "y", "z"}
    assert labels.splits == {"va": {}, "expr": {}}
    classes = {video: EXPR_CLASSES_ABAW3[int(labels.labels[video]["expr"][0])] for video in labels.video_ids()}
    assert classes == {"x": "Anger", "y": "Fear", "z": "Disgust", "w": "Neutral"}
    np.testing.assert_allclose(labels.labels["y"]["va"], [[-0.1, -0.2]])


def test_unknown_class_name_names_file_line_value_and_known_names(tmp_path):
    path = write_csv(tmp_path / "labels.csv", "video,expr\na,happy\nb,contempt")
    with pytest.raises(LabelError, match=r"line 3: expr value 'contempt'.*known names: .*happiness") as error:
        load_labels(path, strict=True)
    assert str(path) in str(error.value)
    masked = load_labels(path)  # by default an unknown class is masked and counted like any out-of-range value
    assert masked.out_of_range == {str(path): {"expr": 1}} and masked.labels["b"]["expr"].tolist() == [-1]


def test_csv_errors(tmp_path):
    with pytest.raises(LabelError, match="column_map maps expr to feeling"):
        load_labels(write_csv(tmp_path / "a.csv", "video,expr\na,1"), column_map={"expr": "feeling"})
    with pytest.raises(LabelError, match="no label columns"):
        load_labels(write_csv(tmp_path / "b.csv", "video,mood\na,1"))
    with pytest.raises(LabelError, match="one row per video"):
        load_labels(write_csv(tmp_path / "c.csv", "video,expr\na,1\na,2"))
    with pytest.raises(LabelError, match="no va labels here; the labels have expr"):
        load_labels(write_csv(tmp_path / "d.csv", "video,expr\na,1"), tasks=["va"])


def make_set(labels: dict, per_clip=()) -> LabelSet:
    return LabelSet(tasks={"va": va_task(), "expr": expr_task()}, labels=labels, splits={"va": {}, "expr": {}},
                    per_clip=set(per_clip), source="test")


def test_fit_to_frames_trims_pads_broadcasts_and_reports(caplog):
    label_set = make_set({
        "long": {"expr": np.arange(380) % 8},
        "short": {"va": np.array([[0.1, 0.2], [0.3, 0.4]], np.float32), "expr": np.array([1, 2, 3])},
        "clip": {"expr": np.array([5])},
        "gone": {"expr": np.array([0])},
    }, per_clip=["clip"])
    with caplog.at_level(logging.WARNING, logger="affectsync.labels"):
        aligned, messages = fit_to_frames(label_set, {"long": 379, "short": 4, "clip": 6, "unlabelled": 10})
    assert set(aligned) == {"long", "short", "clip"}
    assert all(set(tasks) == {"va", "expr"} for tasks in aligned.values())
    assert aligned["long"]["expr"].shape == (379,) and aligned["long"]["expr"][-1] == 378 % 8
    np.testing.assert_array_equal(aligned["long"]["va"], np.full((379, 2), -5, np.float32))  # task the video lacks
    np.testing.assert_array_equal(aligned["short"]["va"], np.float32([[0.1, 0.2], [0.3, 0.4], [0.3, 0.4], [0.3, 0.4]]))
    np.testing.assert_array_equal(aligned["short"]["expr"], [1, 2, 3, 3])
    np.testing.assert_array_equal(aligned["clip"]["expr"], [5] * 6)
    assert messages == [
        "video long: expr labels have 380 rows, features 379 frames: trimmed 1 row from the end",
        "video short: va labels have 2 rows, features 4 frames: padded 2 rows by repeating the last row",
        "video short: expr labels have 3 rows, features 4 frames: padded 1 row by repeating the last row",
        "video gone: labelled but not in the store; skipped",
    ]
    logged = [record.getMessage() for record in caplog.records]
    assert messages[0] in logged and messages[1] in logged and any("gone" in message for message in logged)
    label_set.labels["short"]["expr"][0] = 99
    assert aligned["short"]["expr"][0] == 1  # aligned arrays do not share memory with the label set


def test_abaw3_folder_fitted_to_store_lengths(abaw3):
    aligned, messages = fit_to_frames(load_labels(abaw3), {"10-60-1280x720_left": 3, "video3": 5})
    padded = "labels have 4 rows, features 5 frames: padded 1 row by repeating the last row"
    assert messages == [f"video video3: va {padded}", f"video video3: expr {padded}",
                        "video 10-60-1280x720_right: labelled but not in the store; skipped"]
    np.testing.assert_array_equal(aligned["video3"]["expr"], [7, -1, 4, 0, 0])
    assert aligned["video3"]["au"].shape == (5, 12) and not au_task().valid(aligned["video3"]["au"]).any()


def test_real_crema_d_labels(shared_media):
    path = shared_media / "crema_d" / "labels.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    labels = load_labels(path, column_map={"expr": "intended_emotion"})
    assert list(labels.tasks) == ["expr"] and labels.layout() == "csv"
    assert len(labels.video_ids()) == 6 and labels.per_clip == set(labels.video_ids())
    names = {video: EXPR_CLASSES_ABAW3[int(labels.labels[video]["expr"][0])] for video in labels.video_ids()}
    assert names["1001_DFA_ANG_XX"] == "Anger" and names["1001_DFA_HAP_XX"] == "Happiness"
    assert names["1001_DFA_SAD_XX"] == "Sadness" and names["1001_DFA_NEU_XX"] == "Neutral"
    aligned, messages = fit_to_frames(labels, {"1001_DFA_ANG_XX": 70})
    assert aligned["1001_DFA_ANG_XX"]["expr"].tolist() == [1] * 70
    assert len(messages) == 5 and all(message.endswith("skipped") for message in messages)
