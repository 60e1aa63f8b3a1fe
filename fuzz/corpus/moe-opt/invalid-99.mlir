func.func @combine_slot_rows_element_type(%e: tensor<?x16xf32>, %rows: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  %y = moe.combine %e, %rows, %w
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}
