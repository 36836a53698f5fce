-- Class transitions of each commune between its previous and its latest classes (one row per
-- (from_class, to_class), unchanged diagonal included). A NULL class is a cell unscored on that side.
select
    commune::varchar as commune,
    from_run,
    to_run,
    from_class::utinyint as from_class,
    to_class::utinyint as to_class,
    cells::bigint as cells
from {{ source('iarbre', 'score_diff') }}
