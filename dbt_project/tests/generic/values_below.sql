{#- Returns the rows whose `column_name` is not below `upper_bound`. -#}
{% test values_below(model, column_name, upper_bound) %}
    select {{ column_name }}
    from {{ model }}
    where {{ column_name }} >= {{ upper_bound }}
{% endtest %}
