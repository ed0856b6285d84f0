"""Style counts kept per vote: the rows the style-controlled fit reads (models.StyleCount).

- ``add_vote``: a live anonymous vote that counts adds one to its row in the vote's transaction,
  by one statement (``INSERT ... SELECT ... ON CONFLICT DO UPDATE``, on PostgreSQL and SQLite
  alike) that reads its two images' sizes and compute times where they lie;
- ``rebuild``: every row recounted from the votes that count, by one
  ``INSERT ... SELECT ... GROUP BY`` (services.rebuild_counts, so whatever takes votes out of the
  pair counts takes them out here too);
- ``load``: a refresh reads these rows, and no vote, into the fit's rows (style.StyledCounts).

An image's class (style.image_classes: aspect, resolution and time bucket) is computed in SQL
here, from the edges in leaderboard.style, with the same IEEE double arithmetic; the tests check
it against style.image_classes. As on the board before the counts were kept, an unknown compute
time counts as 0 (a fast image), and a tie and "both bad" count as a tie.
"""

from __future__ import annotations

import numpy as np
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper

from arena import statements
from leaderboard import style, tally
from leaderboard.models import STYLE_DIFFERENCES, StyleCount

# The columns of a row after the models and differences, indexed by tally.Outcome: a style row
# keeps the sides as shown (left, right), not the pair's stored order.
OUTCOME_FIELDS = ("wins_left", "wins_right", "ties", "both_bad")


def _image_class_sql(alias: str) -> str:
    """The SQL of style.image_classes for the generation row ``alias``: 9 * aspect +
    3 * resolution + time bucket."""
    q = connection.ops.quote_name
    width, height = f"{alias}.{q('output_width')}", f"{alias}.{q('output_height')}"
    ms = f"{alias}.{q('compute_ms')}"

    def real(value: str) -> str:
        return f"CAST({value} AS DOUBLE PRECISION)"

    # width / height as numpy divides: x / 0 is +inf (landscape), 0 / 0 NaN (square).
    ratio = f"{real(width)} / {height}"
    aspect = (
        f"CASE WHEN {height} = 0 THEN (CASE WHEN {width} = 0 THEN 1 ELSE 2 END)"
        f" WHEN {ratio} < {real(repr(style.ASPECT_EDGES[0]))} THEN 0"
        f" WHEN {ratio} > {real(repr(style.ASPECT_EDGES[1]))} THEN 2 ELSE 1 END"
    )
    pixels = f"CAST({width} AS BIGINT) * {height}"
    resolution = _edges_passed(pixels, [str(int(edge)) for edge in style.RESOLUTION_EDGES])
    seconds = f"{real(f'COALESCE({ms}, 0)')} / {real('1000.0')}"
    bucket = _edges_passed(seconds, [real(repr(float(edge))) for edge in style.TIME_EDGES])
    return f"(9 * ({aspect}) + 3 * {resolution} + {bucket})"


def _edges_passed(value: str, edges: list[str]) -> str:
    """SQL of how many of the ascending ``edges`` are at or below ``value``."""
    return "(" + " + ".join(f"CASE WHEN {value} >= {e} THEN 1 ELSE 0 END" for e in edges) + ")"


def _differences_sql(left: str, right: str) -> list[str]:
    """SQL of each difference column (STYLE_DIFFERENCES) from two image-class expressions."""
    names = style.covariate_names()
    columns = []
    for name in STYLE_DIFFERENCES:
        classes = np.flatnonzero(style.CLASS_COVARIATES[:, names.index(name)]).tolist()
        members = ", ".join(str(code) for code in classes)
        columns.append(
            f"(CASE WHEN {left} IN ({members}) THEN 1 ELSE 0 END"
            f" - CASE WHEN {right} IN ({members}) THEN 1 ELSE 0 END)"
        )
    return columns


def _insert_head() -> str:
    q = connection.ops.quote_name
    columns = ["model_left_id", "model_right_id", *STYLE_DIFFERENCES, *OUTCOME_FIELDS]
    return f"INSERT INTO {q(StyleCount._meta.db_table)} ({', '.join(q(c) for c in columns)})"


def _tables() -> tuple[str, str, str]:
    from arena.models import Battle, Vote
    from generation.models import Generation

    q = connection.ops.quote_name
    return (
        q(Vote._meta.db_table),
        q(Battle._meta.db_table),
        q(Generation._meta.db_table),
    )


def _add_vote_sql(connection: BaseDatabaseWrapper, variant: str) -> str:
    q = connection.ops.quote_name
    table = q(StyleCount._meta.db_table)
    _, _, generation = _tables()
    differences = ", ".join(_differences_sql("images.class_left", "images.class_right"))
    key = ", ".join(q(c) for c in ("model_left_id", "model_right_id", *STYLE_DIFFERENCES))
    added = ", ".join(f"{q(c)} = {table}.{q(c)} + excluded.{q(c)}" for c in OUTCOME_FIELDS)
    return (
        f"{_insert_head()} SELECT %s, %s, {differences}, %s, %s, %s, %s"  # noqa: S608 (names)
        f" FROM (SELECT {_image_class_sql('l')} AS class_left,"
        f" {_image_class_sql('r')} AS class_right"
        f" FROM {generation} l, {generation} r WHERE l.{q('id')} = %s AND r.{q('id')} = %s)"
        # SQLite needs a WHERE before ON CONFLICT to parse an upsert from a SELECT.
        f" AS images WHERE {variant} ON CONFLICT ({key}) DO UPDATE SET {added}"
    )


# The style upsert per condition, written once per process and database and prepared on
# PostgreSQL (arena.statements): planning it anew cost the database about 0.4 ms per vote.
_ADD_VOTE = statements.Variants(_add_vote_sql, name="style count upsert")


def vote_statement(
    *,
    left_id: int,
    right_id: int,
    generation_left_id: int,
    generation_right_id: int,
    choice: str,
    only_if: str = "1 = 1",
) -> tuple[statements.Statement, list[object]]:
    """The statement that adds one live anonymous vote to its style row (classing its two
    images and inserting the row or adding to it), with its parameters; it changes one row."""
    outcome = tally.FROM_CHOICE[choice]
    counts = [int(outcome == index) for index in range(len(OUTCOME_FIELDS))]
    params: list[object] = [left_id, right_id, *counts, generation_left_id, generation_right_id]
    return _ADD_VOTE[only_if], params


def rebuild() -> None:
    """Recount every style row from the live anonymous votes that count (the caller deletes
    the old rows and holds the locks: services.rebuild_counts)."""
    from arena.models import Battle

    q = connection.ops.quote_name
    vote, battle, generation = _tables()
    differences = ", ".join(_differences_sql("images.class_left", "images.class_right"))
    choice_of = {outcome: choice for choice, outcome in tally.FROM_CHOICE.items()}
    sums = ", ".join("SUM(CASE WHEN images.choice = %s THEN 1 ELSE 0 END)" for _ in OUTCOME_FIELDS)
    sql = (
        f"{_insert_head()} SELECT images.model_left_id, images.model_right_id, {differences},"  # noqa: S608
        f" {sums} FROM (SELECT b.{q('model_left_id')} AS model_left_id,"
        f" b.{q('model_right_id')} AS model_right_id, v.{q('choice')} AS choice,"
        f" {_image_class_sql('l')} AS class_left, {_image_class_sql('r')} AS class_right"
        f" FROM {vote} v JOIN {battle} b ON b.{q('id')} = v.{q('battle_id')}"
        f" JOIN {generation} l ON l.{q('id')} = b.{q('generation_left_id')}"
        f" JOIN {generation} r ON r.{q('id')} = b.{q('generation_right_id')}"
        f" WHERE v.{q('excluded')} = %s AND b.{q('anonymous')} = %s AND b.{q('status')} = %s)"
        f" AS images GROUP BY {', '.join(str(i) for i in range(1, 3 + len(STYLE_DIFFERENCES)))}"
    )
    choices = [choice_of[tally.Outcome(index)] for index in range(len(OUTCOME_FIELDS))]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*choices, False, True, Battle.Status.VOTED.value])


def _kept_rows() -> np.ndarray:
    """Every kept row as integers (models, differences, OUTCOME_FIELDS). On PostgreSQL the rows
    come as one binary value that numpy reads: the driver's fetchall builds a Python int for
    each of some 120,000 values, which took longer than the query."""
    q = connection.ops.quote_name
    table = q(StyleCount._meta.db_table)
    models, counts = ["model_left_id", "model_right_id"], list(OUTCOME_FIELDS)
    columns = [*models, *STYLE_DIFFERENCES, *counts]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(q(c) for c in columns)} FROM {table}")  # noqa: S608
            return np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, len(columns))
    # Each row as big-endian bytes (int8send and the like), all rows concatenated.
    kinds = [("BIGINT", "int8send", ">i8")] * len(models)
    kinds += [("SMALLINT", "int2send", ">i2")] * len(STYLE_DIFFERENCES)
    kinds += [("INTEGER", "int4send", ">i4")] * len(counts)
    packed = " || ".join(
        f"{send}(CAST({q(c)} AS {sql}))" for c, (sql, send, _) in zip(columns, kinds, strict=True)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT string_agg({packed}, ''::bytea) FROM {table}")  # noqa: S608
        (value,) = cursor.fetchone() or (None,)
    row = np.dtype([(c, kind) for c, (_, _, kind) in zip(columns, kinds, strict=True)])
    rows = np.frombuffer(bytes(value or b""), dtype=row)
    return np.column_stack([rows[c].astype(np.int64) for c in columns]).reshape(-1, len(columns))


def load(*, model_ids: list[int]) -> style.StyledCounts:
    """The kept style rows between models of ``model_ids`` as the style fit's rows, indexed as
    ``model_ids``: the rows ``style.aggregate_image_votes`` gives for the same votes, in the
    same order. One read of the kept rows; no vote is read."""
    data = _kept_rows()
    ids = np.asarray(model_ids, dtype=np.int64)
    index = np.full(int(max(ids.max(initial=0), data[:, :2].max(initial=0))) + 1, -1)
    index[ids] = np.arange(ids.size)
    left, right = index[data[:, 0]], index[data[:, 1]]
    counts = data[:, -len(OUTCOME_FIELDS) :]
    keep = (left >= 0) & (right >= 0) & (counts.sum(axis=1) > 0)
    left, right = left[keep], right[keep]
    differences = data[keep, 2 : 2 + len(STYLE_DIFFERENCES)].astype(np.float64)
    counts = counts[keep].astype(np.float64)
    # np.unique's order of (left, right, difference) rows, as aggregate_image_votes gives them.
    by = np.lexsort((*differences.T[::-1], right, left))
    return style.StyledCounts(
        left=left[by].astype(np.int64),
        right=right[by].astype(np.int64),
        features=np.column_stack([np.ones(by.size), differences[by]]),
        wins_left=counts[by, 0],
        wins_right=counts[by, 1],
        ties=counts[by, 2] + counts[by, 3],
        n_models=max(len(model_ids), 1),
    )
