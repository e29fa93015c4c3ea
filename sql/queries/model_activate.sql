select pyembed.activate_model(%(model_id)s, %(force)s, build_index => %(build_index)s)
