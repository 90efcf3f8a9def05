{#- Fails (or warns) when the model holds more than `max_rows` rows; reports the count. -#}
{% test row_count_at_most(model, max_rows) %}
    select count(*) as n_rows
    from {{ model }}
    having count(*) > {{ max_rows }}
{% endtest %}
