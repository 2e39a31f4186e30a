import pickle

from lngraph.io.errors import InputError


def test_message_names_file_line_and_node():
    err = InputError("nodes.csv", "x is empty", line=4, what="node n1 of scan s1")
    assert str(err) == "nodes.csv, line 4 (node n1 of scan s1): x is empty"
    assert (err.path, err.line, err.problem, err.what) == ("nodes.csv", 4, "x is empty",
                                                           "node n1 of scan s1")


def test_survives_pickling_between_processes():
    err = InputError("img.nii.gz", "node outside the image", what="node 3")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, InputError)
    assert str(back) == str(err) and back.what == "node 3"
